# The host projects are run by test_wheel.py in a fresh virtualenv, from a copy: not collected here.
collect_ignore = ["hosts"]
