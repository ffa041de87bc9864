"""A tool-calling agent: the model named by the run's context, tools from tools.py."""
