-- First start of the database container (docker-entrypoint-initdb.d, run in $POSTGRES_DB):
-- pgvector in the catalog's database (cdcvec sync writes its index there, schema cdcvec), and a
-- second database, vectors, for the kafka profile's `cdcvec sink`, so that the two pipelines
-- never write the same index.
CREATE EXTENSION IF NOT EXISTS vector;
CREATE DATABASE vectors;
\connect vectors
CREATE EXTENSION IF NOT EXISTS vector;
