-- test_quix_format.sh: tables of many types, and an unlogged trigger log (invisible to logical
-- decoding) that records every row change with its columns' text (hstore(record)).
CREATE EXTENSION hstore;
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy "yes"');
CREATE DOMAIN posint AS int CHECK (VALUE > 0);
CREATE TABLE books (
  id int NOT NULL,
  code text NOT NULL,
  name varchar(255),
  description text,
  author varchar(255),
  year int,
  i2 int2, i8 int8, o oid,
  num numeric, num2 numeric(10,2),
  f4 float4, f8 float8,
  b bool,
  ch char(3),
  ts timestamp, tstz timestamptz, ts3 timestamp(3), d date, tm time, iv interval,
  j json, jb jsonb, u uuid, by bytea,
  ia int[], ta text[],
  m mood, p posint,
  "Mixed ""Col""" text,
  big text,
  PRIMARY KEY (id, code)
);
CREATE SCHEMA "Sch ""q""";
CREATE TABLE "Sch ""q"""."Tbl é" (k int, v text, n numeric);
ALTER TABLE "Sch ""q"""."Tbl é" REPLICA IDENTITY FULL;

CREATE UNLOGGED TABLE quix_log (seq bigserial PRIMARY KEY, rel oid, op text, new hstore, old hstore);
CREATE FUNCTION quix_log_row() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO quix_log (rel, op, new, old)
  VALUES (TG_RELID, lower(TG_OP),
          CASE WHEN TG_OP <> 'DELETE' THEN hstore(NEW) END,
          CASE WHEN TG_OP <> 'INSERT' THEN hstore(OLD) END);
  RETURN NULL;
END $$;
CREATE TRIGGER quix_log AFTER INSERT OR UPDATE OR DELETE ON books FOR EACH ROW EXECUTE FUNCTION quix_log_row();
CREATE TRIGGER quix_log AFTER INSERT OR UPDATE OR DELETE ON "Sch ""q"""."Tbl é"
  FOR EACH ROW EXECUTE FUNCTION quix_log_row();
