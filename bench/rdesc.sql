-- rdesc(n): a random catalog description of n words, for the pipeline benchmarks
-- (bench/run_pipeline.sh, bench/run_kafka.sh): the same vocabulary, so their figures compare.
CREATE FUNCTION rdesc(n int) RETURNS text LANGUAGE sql VOLATILE AS $$
  SELECT string_agg((ARRAY['the','a','of','and','to','in','alien','invasion','planet','desert','political','intrigue',
    'power','struggle','mathematician','science','future','civilization','collapse','virtual','reality','martian',
    'earth','chaos','dystopian','society','teenagers','spectacle','peaceful','childhood','meteor','population',
    'ocean','residents','interstellar','war','detective','murder','mystery','kingdom','dragon','quest','romance',
    'family','secrets','journey','island','empire','rebellion','magic','ancient'])[1 + floor(random() * 51)::int], ' ')
  FROM generate_series(1, n) $$;
