"""The course's problems, one folder each (see autograder/registry.py for what a folder holds)."""
