"""inputs: configuration and the file formats, each validated into core types"""
