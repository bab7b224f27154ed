-- MySQL 8.4 primary: accounts with caching_sha2_password (8.4's default; mysql_native_password
-- is disabled there), logged to the binlog so the replicas apply them through replication.
CREATE USER IF NOT EXISTS 'app'@'%' IDENTIFIED WITH caching_sha2_password BY 'app-password';
GRANT SELECT, INSERT, UPDATE, DELETE, CREATE, DROP, INDEX, ALTER, CREATE TEMPORARY TABLES,
  LOCK TABLES, EXECUTE, CREATE VIEW, SHOW VIEW, CREATE ROUTINE, ALTER ROUTINE, TRIGGER ON *.* TO 'app'@'%';
-- Health checks, replica positions and the binlog stream. MySQL has no SLAVE MONITOR /
-- BINLOG MONITOR: REPLICATION CLIENT covers SHOW REPLICA STATUS and SHOW BINARY LOG STATUS.
CREATE USER IF NOT EXISTS 'rwsplit_monitor'@'%' IDENTIFIED WITH caching_sha2_password BY 'monitor-password';
GRANT SELECT, PROCESS, REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO 'rwsplit_monitor'@'%';
CREATE DATABASE IF NOT EXISTS rwsplit_test;
