"""binlake"""
