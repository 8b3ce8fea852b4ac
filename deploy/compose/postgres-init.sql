-- Run once by the postgres image on an empty data volume (/docker-entrypoint-initdb.d):
-- one server, one role (POSTGRES_USER, owner of POSTGRES_DB = edgeloop, the loop's tables),
-- and a database each for the MLflow server and Dagster's run/event-log/schedule storage.
CREATE DATABASE mlflow OWNER edgeloop;
CREATE DATABASE dagster OWNER edgeloop;
