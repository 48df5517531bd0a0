#!/bin/bash
# Run once by the MySQL image's entrypoint on a new datadir: the user Debezium and binlake's
# reconciliation checks connect as, with the grants Debezium's MySQL connector needs.
set -euo pipefail
mysql --protocol=socket -uroot -p"${MYSQL_ROOT_PASSWORD}" <<SQL
CREATE USER IF NOT EXISTS 'cdc'@'%' IDENTIFIED BY '${MYSQL_CDC_PASSWORD}';
GRANT SELECT, RELOAD, SHOW DATABASES, REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO 'cdc'@'%';
CREATE DATABASE IF NOT EXISTS shop;
SQL
