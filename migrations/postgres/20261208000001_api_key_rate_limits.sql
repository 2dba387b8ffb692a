-- A key's own rate limit; both unset take the server's default for keys.
ALTER TABLE api_keys ADD COLUMN rate_limit_calls_per_second INTEGER;
ALTER TABLE api_keys ADD COLUMN rate_limit_burst INTEGER;
