-- test_quix_format.sh: the changes, in multi-row transactions, after the slot exists.
-- A text of 12 KB that does not compress (stored out of line: TOASTed).
CREATE TEMP TABLE bigtext AS
  SELECT string_agg(md5(i::text), '') AS v FROM generate_series(1, 400) i;

BEGIN;
INSERT INTO books (id, code, name, description, author, year) VALUES
  (1, 'a', 'Dune', 'Spice, sand and "worms"', 'Frank Herbert', 1965),
  (2, 'b', 'Neuromancer', E'Cyberspace\nline two\ttab', 'William Gibson', 1984),
  (3, 'c', NULL, NULL, NULL, NULL);
INSERT INTO books VALUES
  (10, 'x', 'All types', E'quotes " \\ backslash / slash \b\f\n\r\t ctl \x01\x1f del \x7f é 中文 😀 \u2028',
   'Ünïcödé', -2000, -32768, 9223372036854775807, 4294967295,
   1.50, 12345678.90, 1.5, 0.1, true, 'ab', '2024-02-29 12:34:56.789', '2024-02-29 12:34:56.789+05:30',
   '1999-12-31 23:59:59.9999', '2024-02-29', '23:59:59.999999', '1 year 2 mons 3 days 04:05:06.5',
   '{"b": [1, 2.50, "x\u00e9"], "a": null}', '{"b": [1, 2.50, "x\u00e9"], "a": null}',
   'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', E'\\x00ff10', '{1,NULL,-3}', '{"a b","c,d",NULL,"q\"x"}',
   'happy "yes"', 7, 'mixed', (SELECT v FROM bigtext)),
  (11, 'y', '', '', '', 0, 0, 0, 0,
   'NaN', 0, 'NaN', 'NaN', false, '', '-infinity', 'infinity', NULL, '-infinity', '00:00', '-1 days',
   '[]', '{}', '00000000-0000-0000-0000-000000000000', '', '{}', '{}', 'sad', 1, NULL, NULL),
  (12, 'z', 'nums', 'n', 'n', 1, 1, -9223372036854775808, 0,
   123456789012345678901234567890.123456789, -0.00, '-0', '-0', NULL, 'xyz', NULL, NULL, NULL, NULL, NULL, NULL,
   NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
  (13, 'w', 'floats', 'f', 'f', 2, 2, 2, 2,
   'Infinity', 99999999.99, 3.4028235e38, 1e20, true, 'q', NULL, NULL, NULL, NULL, NULL, NULL,
   'null', 'null', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
  (14, 'v', 'more floats', 'f', 'f', 3, 3, 3, 3,
   '-Infinity', -0.01, 1.17549435e-38, 'Infinity', true, 'q', NULL, NULL, NULL, NULL, NULL, NULL,
   '1e400', '1.0e2', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
  (15, 'u', 'floats 3', 'f', 'f', 4, 4, 4, 4,
   0.000001, 0.1, 1e-7, '-Infinity', true, 'q', NULL, NULL, NULL, NULL, NULL, NULL,
   NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
  (16, 't', 'floats 4', 'f', 'f', 5, 5, 5, 5,
   1e-10, 0.5, 16777217, 1e16, true, 'q', NULL, NULL, NULL, NULL, NULL, NULL,
   NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
  (17, 's', 'floats 5', 'f', 'f', 6, 6, 6, 6,
   1e15, 1, 123456.789, 1e15, true, 'q', NULL, NULL, NULL, NULL, NULL, NULL,
   NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
  (18, 'r', 'floats 6', 'f', 'f', 7, 7, 7, 7,
   100, 100, 100, 100, true, 'q', NULL, NULL, NULL, NULL, NULL, NULL,
   NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
  (19, 'q', 'floats 7', 'f', 'f', 8, 8, 8, 8,
   0.0001, 0.00001, 0.00001, 0.0001, true, 'q', NULL, NULL, NULL, NULL, NULL, NULL,
   NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
  (20, 'p', 'floats 8', 'f', 'f', 9, 9, 9, 9,
   5e-324, 0, 1.4e-45, 5e-324, true, 'q', NULL, NULL, NULL, NULL, NULL, NULL,
   NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
  (21, 'o', 'floats 9', 'f', 'f', 10, 10, 10, 10,
   1.7976931348623157e308, 0, 1e30, 1.7976931348623157e308, true, 'q', NULL, NULL, NULL, NULL, NULL, NULL,
   NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);
COMMIT;

-- updates: payload only; the TOASTed "big" left unchanged (wal2json omits it)
BEGIN;
UPDATE books SET year = 1966, description = 'Spice, sand and worms (2nd ed.)' WHERE id = 1;
UPDATE books SET i2 = 12 WHERE id = 10;
UPDATE books SET name = 'Neuromancer ☃' WHERE id = 2;
COMMIT;
-- key changed (old tuple carries the old key), TOASTed column rewritten
BEGIN;
UPDATE books SET code = 'bb', id = 22 WHERE id = 2;
UPDATE books SET big = big || 'x' WHERE id = 10;
UPDATE books SET id = 30 WHERE id = 10;
COMMIT;
-- a rollback leaves nothing
BEGIN;
INSERT INTO books (id, code) VALUES (99, 'gone');
DELETE FROM books WHERE id = 1;
ROLLBACK;
-- deletes, one of a row with a TOASTed value
BEGIN;
DELETE FROM books WHERE id IN (3, 11);
DELETE FROM books WHERE id = 30;
COMMIT;
-- single-statement transactions, many rows at once
UPDATE books SET num = num * 2 WHERE id BETWEEN 12 AND 21;
INSERT INTO books (id, code, name, description, author, year)
  SELECT g, 'g' || g, 'Book ' || g, repeat('ab"\', g % 7) || chr(g + 200), 'A' || g, 1900 + g
  FROM generate_series(100, 120) g;
DELETE FROM books WHERE id BETWEEN 100 AND 104;

-- REPLICA IDENTITY FULL in an oddly named schema and table: oldkeys hold the whole old row
BEGIN;
INSERT INTO "Sch ""q"""."Tbl é" VALUES (1, 'one', 1.25), (2, NULL, NULL), (3, E'tab\there', -3);
UPDATE "Sch ""q"""."Tbl é" SET v = 'uno' WHERE k = 1;
UPDATE "Sch ""q"""."Tbl é" SET n = 2 WHERE k = 2;
DELETE FROM "Sch ""q"""."Tbl é" WHERE k = 3;
COMMIT;
