"""What tests (and benchmarks) share: Debezium and Avro record builders, process and broker
helpers, bronze file builders on the real encoder, and the lake fixtures. Fixtures are defined
here and exposed to a test folder by its conftest.py; no test module imports another."""
