"""The local stand-in for production: MariaDB, Apache Kafka, Kafka Connect + Debezium, the Faust
worker and Dagster, started and supervised under one state directory by `binlake up`."""
