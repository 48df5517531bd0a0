"""Change data capture: everything between the MySQL binlog and a typed row.

- `connector_config`: the one Debezium MySQL connector config (local stack and production).
- `connect_client`: Kafka Connect REST client to register, watch, pause and restart it.
- `envelope`: the decoded change, `ChangeEvent` (row, Arrow schema, key, `SourcePosition`), and
  its construction from an envelope's payload.
- `connect_schema`: a record's Connect schema -> Arrow column types and value converters.
- `json_decoding`: `ChangeEvent`s from JsonConverter records (with schemas): `decode_change`.
- `avro`: the same `ChangeEvent`s from AvroConverter records (Confluent wire format + registry).
"""
