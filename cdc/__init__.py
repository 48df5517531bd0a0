"""Change data capture: everything between the MySQL binlog and a typed row.

- `connector_config`: the one Debezium MySQL connector config (local stack and production).
- `connect_client`: Kafka Connect REST client to register, watch, pause and restart it.
- `envelope`: decodes Debezium change records (JsonConverter with schemas) into `ChangeEvent`s
  whose row values and Arrow schema come from the record's Connect schema.
- `avro`: the same `ChangeEvent`s from AvroConverter records (Confluent wire format + registry).
"""
