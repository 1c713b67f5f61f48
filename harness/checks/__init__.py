"""The assertions of each seed section, shared by the suites and by the broken-mesh tests.

Each check takes a Scenario whose stage is already applied, drives real traffic and raises
HopFailure naming the hop whose evidence is missing or wrong.
"""
