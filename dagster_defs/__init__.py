"""dagster_defs"""
