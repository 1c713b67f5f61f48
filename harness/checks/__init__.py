"""The vocabulary the suites' test bodies are written in: named checks, each saying what it
verifies about one traced exchange and which hop it blames (hop_checks: hop by hop; seen_checks:
what the client, the gateway and the stand-in saw), and each seed section's facts (its URLs,
hosts, counters, and the checks only that section needs). The specification itself, what is sent
and which checks each exchange must pass, is in the suites' test bodies; tests/test_broken_mesh.py
calls those same functions on broken meshes.
"""
