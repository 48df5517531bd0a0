#!/bin/bash
# Run once by the MySQL image's entrypoint on a new datadir: the user Debezium and binlake's
# reconciliation checks connect as, with the grants Debezium's MySQL connector needs.
set -euo pipefail
mysql --protocol=socket -uroot -p"${MYSQL_ROOT_PASSWORD}" <<SQL
CREATE USER IF NOT EXISTS 'cdc'@'%' IDENTIFIED BY '${MYSQL_CDC_PASSWORD}';
GRANT SELECT, RELOAD, SHOW DATABASES, REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO 'cdc'@'%';
CREATE DATABASE IF NOT EXISTS shop;
-- binlake resync: Debezium's signal table (resync.signal_table in the first captured database);
-- binlake inserts execute-snapshot signals, Debezium writes and deletes its watermarks.
CREATE TABLE IF NOT EXISTS shop.binlake_signal (id VARCHAR(64) PRIMARY KEY, type VARCHAR(32) NOT NULL, data TEXT NULL);
GRANT INSERT, DELETE ON shop.binlake_signal TO 'cdc'@'%';
SQL
