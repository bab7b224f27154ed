-- Accounts on the primary; IF NOT EXISTS so that replicas, which create the same accounts
-- locally, can also apply these statements if the image logged them to the binlog.
CREATE USER IF NOT EXISTS 'app'@'%' IDENTIFIED BY 'app-password';
GRANT SELECT, INSERT, UPDATE, DELETE, CREATE, DROP, INDEX, ALTER, CREATE TEMPORARY TABLES,
  LOCK TABLES, EXECUTE, CREATE VIEW, SHOW VIEW, CREATE ROUTINE, ALTER ROUTINE, TRIGGER ON *.* TO 'app'@'%';
CREATE USER IF NOT EXISTS 'rwsplit_monitor'@'%' IDENTIFIED BY 'monitor-password';
GRANT SELECT, PROCESS, REPLICATION SLAVE, REPLICATION CLIENT, SLAVE MONITOR, BINLOG MONITOR ON *.* TO 'rwsplit_monitor'@'%';
CREATE DATABASE IF NOT EXISTS rwsplit_test;
