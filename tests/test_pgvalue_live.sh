#!/usr/bin/env bash
# test_pgvalue_live.sh: cv_pgvalue_json() against the server's own to_jsonb(), on a private
# PostgreSQL 15 (scripts/pg.sh) with a table of many column types and nasty values. For every
# row and column, pgvalue_probe compares the JSON of `col::text` with `to_jsonb(col)::text`
# byte for byte and checks that a column's JSON type does not depend on its value.
#   usage: test_pgvalue_live.sh path/to/pgvalue_probe
set -u
. "$(dirname "$0")/sync_lib.sh"
test_begin pgvalue 49000 "$1"
probe=$bin
pg_up
psql -qX -v ON_ERROR_STOP=1 "$DB" >/dev/null <<'SQL' || { echo "FAIL cannot create the table"; exit 1; }
CREATE EXTENSION citext;
CREATE EXTENSION hstore;
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy "yes"');
CREATE DOMAIN price AS numeric(10,2);
CREATE DOMAIN posint AS int CHECK (VALUE > 0);
CREATE DOMAIN intarr AS int[];
CREATE DOMAIN stamp AS timestamptz;
CREATE TYPE addr AS (street text, "No." int, tags text[], at stamp, d date, j jsonb, p price, m mood);
CREATE DOMAIN addr_d AS addr;
CREATE TABLE rowt (a int, gone text, "c d" text, e bool);
ALTER TABLE rowt DROP COLUMN gone;
CREATE TYPE wrap AS (a addr, list addr[], flag bool, " " text, "Ünï ""q""" float8);
CREATE TABLE v (
  id int PRIMARY KEY,
  n102 numeric(10,2), n30 numeric, n38 numeric(38,0), nn numeric,
  i2 int2, i4 int4, i8 int8, f4 float4, f8 float8, b bool,
  j json, jb jsonb,
  ia int[], ta text[], ia2 int[][], ia3 int[], na numeric[], ba bool[], jba jsonb[], ja json[],
  da date[], tsa timestamp[], tza timestamptz[], tma time[], iva interval[], bnd int[], bnd2 text[],
  empty int[], ua uuid[], fa float8[],
  u uuid, by bytea, ci citext, cia citext[], m mood, ma mood[], p price, pa price[], pi posint, dia intarr,
  iv interval, mo money, ine inet, pt point, bx box[], bx1 box, rng int4range, trng tstzrange,
  d date, ts timestamp, tz timestamptz, tm time, ttz timetz, st stamp,
  comp addr, compa addr[], compd addr_d, compda addr_d[], w wrap,
  hs hstore,
  txt text, vc varchar(10), ch char(5), nm name, oi oid, i2v int2vector, bits bit(4), tsv tsvector,
  "Odd ""col"", name" text,
  rt rowt, pia posint[], x xml, qc "char", cha char(3)[], ci4 cidr, mac macaddr, mr int4multirange, rnga int4range[]
);
INSERT INTO v VALUES (1,
  19.99, 123456789012345678.901234567890, 12345678901234567890123456789012345678, 'NaN',
  -32768, -2147483648, -9223372036854775808, 'NaN', 1e-300, true,
  ' {"b": 1,   "a" :[1, 2.50, -0, 1E3, 1e-2, -0.0],
    "b":  {"z": "\u00e9\n\u001f\/\"", "y": null, "": true}, "\ud83d\ude00": [] } ',
  '{"k": [true, false, null], "n": 1.0, "s": "x\ty", "e": {}}',
  '{1,2,3}', ARRAY['a"b', 'c,d', 'e\f', '', 'NULL', 'null', NULL, ' sp ', 'ünï ☃', '{x}', E'tab\tx', E'nl\nx', 'semi;colon'],
  '{{1,2},{3,NULL}}', '{{{1,2},{3,4}},{{5,6},{7,8}}}', '{19.99,NaN,-0.000,Infinity,-Infinity,1e-5,123456789012345678901234567890}',
  '{t,f,NULL}', ARRAY['{"a":1, "a": 2}'::jsonb, '[1,2]', 'null', '"s"', '1.50'],
  ARRAY['{"b":1, "a": 2, "b": [3]}'::json, ' "x" ', NULL],
  '{2024-01-02,infinity,-infinity,0044-03-15 BC}', ARRAY['2024-01-02 03:04:05.5'::timestamp, 'infinity', '0044-03-15 12:00:00 BC'],
  ARRAY['2024-01-02 03:04:05+05:30'::timestamptz, '-infinity', '0001-01-01 00:00:00+00 BC'], '{03:04:05,24:00:00}',
  ARRAY['1 day'::interval, '-1 year 2 mons 03:04:05.5'], '[0:2]={1,2,3}', '[-3:-2][1:2]={{a,"b c"},{NULL,""}}',
  '{}', ARRAY['a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid], '{NaN,Infinity,-0,1e-300,0.1,1e+300}',
  'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '\x00ff22', 'MiXeD "q" \', '{Ab,"c d"}', 'happy "yes"', '{sad,"happy \"yes\""}',
  19.99, '{1.50,NULL,-0.01}', 7, '{4,5}',
  '1 year 2 mons -3 days 04:05:06.5', 12.34, '192.168.0.1', '(1.5,-2)',
  ARRAY['((0,0),(1,1))'::box, '((2,2),(3.5,3))'], '((0,0),(1,1))', '[1,5)', '[2024-01-01 00:00:00+00,infinity)',
  '2024-01-02', '2024-01-02 03:04:05.123456', '2024-01-02 03:04:05+02', '03:04:05', '03:04:05+05:30', '2024-06-01 12:00:00+00',
  ROW('Main St, "1" (back\slash)', 12, '{a,"b c"}', '2024-01-01 00:00:00+00', '2024-01-01', '{"x": [1, "y"]}', 9.5, 'ok'),
  ARRAY[ROW('x', 1, '{}', 'infinity', '0044-03-15 BC', '[]', 0, 'sad')::addr, NULL, ROW(NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)::addr],
  ROW('', -1, NULL, NULL, NULL, 'null', NULL, NULL), ARRAY[ROW('d', 1, NULL, NULL, NULL, NULL, NULL, NULL)::addr_d],
  ROW(ROW('in', 2, '{NULL}', NULL, 'infinity', '"s"', 1, 'happy "yes"')::addr,
      ARRAY[ROW('(),', 3, '{"{}"}', NULL, NULL, '{"a": {"b": [1, 2]}}', NULL, NULL)::addr], true, 'empty key', 'NaN'),
  'a=>1, "b c"=>NULL, "q\"x"=>"\\"',
  E'ctl\x01\x1f\x7f "q" \\ / é \t \r \b \f', 'varchar', 'ab', 'name', 4294967295, '1 -2 3', B'1010', 'a fat:1 cat',
  'odd', ROW(1, 'x', true), '{1,NULL,3}', '<a b="1">t &amp; "q"</a>', 'q', '{a,bc,NULL}', '10.1.0.0/16',
  '08:00:2b:01:02:03', '{[1,3),[5,7)}', ARRAY['[1,5)'::int4range, 'empty', NULL]);
INSERT INTO v (id, n102, n30, n38, nn, i2, i4, i8, f4, f8, b, j, jb, ia, ta, d, ts, tz, tm, ttz, txt, ci, fa, na, comp, w, dia, p, iv)
VALUES (2, -0.01, '-0.000000000000000000000000000001', '-99999999999999999999999999999999999999', 'Infinity',
  32767, 2147483647, 9223372036854775807, 3.4028235e38, '-0', false, '[]', '"str"', '{}', '{}',
  'infinity', '-infinity', 'infinity', '00:00:00', '00:00:00-08', '', '', '{}', '{NULL}',
  ROW(NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL), ROW(NULL, '{}', false, '', '-Infinity'), '{}', 0, '-00:00:01'),
(3, 0, '1e-20', 0, '-Infinity', 0, 0, 0, '-0', 'Infinity', NULL, '  {"a": "\ud83d\ude00", "a" : 2, "aa": 1e+2, "b": -1E-2} ',
  '{"a": {"b": {"c": [[], {}]}}}', '{NULL}', '{NULL,"NULL"}', '0044-03-15 BC', '0044-03-15 12:00:00 BC',
  '0044-03-15 12:00:00+00 BC', '24:00:00', '23:59:59.999999+14', '"', 'x', '{-0,5e-324}', '{0.00000}',
  NULL, NULL, NULL, 99999999.99, '0'),
(4, NULL, '0.000', NULL, '12345.678900', NULL, NULL, NULL, '1.17549435e-38', '-Infinity', NULL, 'null', '12', NULL, NULL,
  '12345-06-07', '12345-06-07 01:02:03', '4713-11-24 00:00:00+00 BC', NULL, NULL, NULL, NULL, '{1.7976931348623157e+308}',
  NULL, NULL, NULL, NULL, NULL, NULL),
(5, NULL, NULL, NULL, NULL, NULL, NULL, NULL, '1e-45', '-1.5e-07', NULL, '1e2', '[1e2, 0.10]', NULL, NULL, NULL,
  '2024-02-29 23:59:59.999999', '1800-01-01 00:00:00+00', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
(6, NULL, NULL, NULL, NULL, NULL, NULL, NULL, '0.1', '0.1', NULL, 'true', 'false', NULL, NULL, NULL, NULL, NULL, NULL,
  NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
(7, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, '123456.789', NULL, '"\u0041\\"', '-0', NULL, NULL, NULL, NULL,
  NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);
SQL
"$probe" "$DB" v
