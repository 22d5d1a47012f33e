"""The application: the command line, ``up``, the workers, the demo, the embedded
broker and the registry wiring that knows every stage. Nothing imports it but
the console script and the tests."""
