-- The user Debezium and the reconciliation checks connect as (password from MYSQL_CDC_PASSWORD
-- is set by the compose file's command-line override in production secrets management).
CREATE USER IF NOT EXISTS 'cdc'@'%' IDENTIFIED BY 'cdc';
GRANT SELECT, RELOAD, SHOW DATABASES, REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO 'cdc'@'%';
CREATE DATABASE IF NOT EXISTS shop;
