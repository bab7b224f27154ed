-- MySQL 8.4 replica: the accounts locally (not logged, so no errant GTIDs), then GTID
-- auto-position replication from the primary. GET_SOURCE_PUBLIC_KEY lets the
-- caching_sha2_password replication user authenticate without TLS on first connect.
SET SESSION sql_log_bin = 0;
CREATE USER IF NOT EXISTS 'app'@'%' IDENTIFIED WITH caching_sha2_password BY 'app-password';
GRANT SELECT, INSERT, UPDATE, DELETE, CREATE, DROP, INDEX, ALTER, CREATE TEMPORARY TABLES,
  LOCK TABLES, EXECUTE, CREATE VIEW, SHOW VIEW, CREATE ROUTINE, ALTER ROUTINE, TRIGGER ON *.* TO 'app'@'%';
CREATE USER IF NOT EXISTS 'rwsplit_monitor'@'%' IDENTIFIED WITH caching_sha2_password BY 'monitor-password';
GRANT SELECT, PROCESS, REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO 'rwsplit_monitor'@'%';
SET SESSION sql_log_bin = 1;
CHANGE REPLICATION SOURCE TO SOURCE_HOST='primary', SOURCE_PORT=3306,
  SOURCE_USER='rwsplit_monitor', SOURCE_PASSWORD='monitor-password',
  SOURCE_AUTO_POSITION=1, GET_SOURCE_PUBLIC_KEY=1, SOURCE_CONNECT_RETRY=1;
START REPLICA;
