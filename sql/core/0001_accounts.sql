-- Owner: core (server/accounts.c, server/sasl.c).
--
-- Accounts and their SCRAM credentials (RFC 5802/7677: salt, iteration
-- count, StoredKey, ServerKey; never a plaintext password), plus the SQL
-- functions operators use to manage them (docs/admin.md, "Accounts").
--
-- The daemon prepares names with full stringprep (nodeprep/nameprep) and
-- passwords with SASLprep (RFC 4013). The SQL functions below can only
-- approximate that: they lowercase the node and the domain, and map the
-- password with the SASLprep space/"nothing" tables followed by
-- normalize(password, NFKC). For ASCII names and passwords the result is
-- identical; for exotic input create the account through magpiectl.

CREATE EXTENSION IF NOT EXISTS pgcrypto;

CREATE TABLE accounts (
	host text NOT NULL,
	username text NOT NULL,
	disabled boolean NOT NULL DEFAULT false,
	created_at timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (host, username)
);
COMMENT ON TABLE accounts IS
	'Owner: core. One row per XMPP account (username@host, both prepared). '
	'disabled = true refuses logins and closes the sessions (NOTIFY magpie_account).';

CREATE TABLE scram_credentials (
	host text NOT NULL,
	username text NOT NULL,
	mechanism text NOT NULL CHECK (mechanism IN ('SCRAM-SHA-1', 'SCRAM-SHA-256')),
	iterations integer NOT NULL CHECK (iterations > 0),
	salt bytea NOT NULL CHECK (length(salt) > 0),
	stored_key bytea NOT NULL,
	server_key bytea NOT NULL,
	PRIMARY KEY (host, username, mechanism),
	FOREIGN KEY (host, username) REFERENCES accounts (host, username) ON DELETE CASCADE,
	CHECK (length(stored_key) = CASE mechanism WHEN 'SCRAM-SHA-1' THEN 20 ELSE 32 END),
	CHECK (length(server_key) = length(stored_key))
);
COMMENT ON TABLE scram_credentials IS
	'Owner: core. SCRAM records per account and mechanism (RFC 5803 fields). '
	'Every account has one row for SCRAM-SHA-1 and one for SCRAM-SHA-256; '
	'PLAIN logins are checked against the SCRAM-SHA-256 row.';

-- "user@host" -> (host, username), lowercased; raises on anything else.
CREATE FUNCTION magpie_account_split_jid(jid text, OUT host text, OUT username text)
LANGUAGE plpgsql IMMUTABLE STRICT AS $$
BEGIN
	IF jid !~ '^[^@/]+@[^@/]+$' THEN
		RAISE EXCEPTION 'not a bare JID "user@host": %', jid
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	username := lower(split_part(jid, '@', 1));
	host := lower(split_part(jid, '@', 2));
END;
$$;
COMMENT ON FUNCTION magpie_account_split_jid(text) IS
	'Split and lowercase a bare JID (an approximation of nodeprep/nameprep).';

-- SASLprep approximation (RFC 4013 §2.1 mappings, then NFKC; no check of
-- prohibited or bidirectional characters).
CREATE FUNCTION magpie_saslprep_approx(password text) RETURNS text
LANGUAGE sql IMMUTABLE STRICT AS $$
	SELECT normalize(
		regexp_replace(
			regexp_replace(password,
				'[\u00A0\u1680\u2000-\u200A\u202F\u205F\u3000]', ' ', 'g'),
			'[\u00AD\u034F\u1806\u180B-\u180D\u200B-\u200D\u2060\uFE00-\uFE0F\uFEFF]',
			'', 'g'),
		NFKC);
$$;
COMMENT ON FUNCTION magpie_saslprep_approx(text) IS
	'SASLprep as far as SQL can: map non-ASCII spaces to a space, drop the '
	'"mapped to nothing" characters, NFKC. The daemon uses real SASLprep.';

-- PBKDF2-HMAC (RFC 5802 Hi()), which pgcrypto lacks. The running XOR is
-- kept as a bit string because bytea has no XOR operator.
CREATE FUNCTION magpie_scram_hi(password bytea, salt bytea, iterations integer, algo text)
RETURNS bytea
LANGUAGE plpgsql IMMUTABLE STRICT AS $$
DECLARE
	u bytea;
	acc varbit;
	n integer;
	result bytea;
BEGIN
	IF iterations < 1 THEN
		RAISE EXCEPTION 'iterations must be positive' USING ERRCODE = 'invalid_parameter_value';
	END IF;
	u := hmac(salt || '\x00000001'::bytea, password, algo);
	acc := ('x' || encode(u, 'hex'))::varbit;
	FOR i IN 2..iterations LOOP
		u := hmac(u, password, algo);
		acc := acc # ('x' || encode(u, 'hex'))::varbit;
	END LOOP;
	n := length(u);
	result := u; -- same length; every byte is overwritten
	FOR k IN 0..n - 1 LOOP
		result := set_byte(result, k, substring(acc FROM k * 8 + 1 FOR 8)::bit(8)::integer);
	END LOOP;
	RETURN result;
END;
$$;
COMMENT ON FUNCTION magpie_scram_hi(bytea, bytea, integer, text) IS
	'PBKDF2 with HMAC-<algo> (sha1 or sha256) and a one-block output: SCRAM''s Hi().';

-- Write both SCRAM rows for an existing account (insert or replace).
CREATE FUNCTION magpie_account_write_scram(p_host text, p_username text, password text,
					   iterations integer)
RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
	pw bytea;
	salt bytea;
	salted bytea;
	algo text;
	mech text;
BEGIN
	IF password IS NULL OR password = '' THEN
		RAISE EXCEPTION 'empty password' USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF iterations IS NULL OR iterations < 1 THEN
		RAISE EXCEPTION 'iterations must be positive' USING ERRCODE = 'invalid_parameter_value';
	END IF;
	pw := convert_to(magpie_saslprep_approx(password), 'UTF8');
	FOREACH mech IN ARRAY ARRAY['SCRAM-SHA-1', 'SCRAM-SHA-256'] LOOP
		algo := CASE mech WHEN 'SCRAM-SHA-1' THEN 'sha1' ELSE 'sha256' END;
		salt := gen_random_bytes(16);
		salted := magpie_scram_hi(pw, salt, iterations, algo);
		INSERT INTO scram_credentials
			(host, username, mechanism, iterations, salt, stored_key, server_key)
		VALUES (p_host, p_username, mech, iterations, salt,
			digest(hmac(convert_to('Client Key', 'UTF8'), salted, algo), algo),
			hmac(convert_to('Server Key', 'UTF8'), salted, algo))
		ON CONFLICT ON CONSTRAINT scram_credentials_pkey DO UPDATE
			SET iterations = EXCLUDED.iterations, salt = EXCLUDED.salt,
			    stored_key = EXCLUDED.stored_key, server_key = EXCLUDED.server_key;
	END LOOP;
END;
$$;
COMMENT ON FUNCTION magpie_account_write_scram(text, text, text, integer) IS
	'Internal: derive and store the SCRAM-SHA-1 and SCRAM-SHA-256 rows.';

CREATE FUNCTION magpie_account_create(jid text, password text, iterations integer DEFAULT 4096)
RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
	j record;
BEGIN
	j := magpie_account_split_jid(jid);
	INSERT INTO accounts (host, username) VALUES (j.host, j.username);
	PERFORM magpie_account_write_scram(j.host, j.username, password, iterations);
END;
$$;
COMMENT ON FUNCTION magpie_account_create(text, text, integer) IS
	'Create user@host with a password (both SCRAM records). Fails if it exists.';

CREATE FUNCTION magpie_account_set_password(jid text, password text,
					    iterations integer DEFAULT 4096)
RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
	j record;
BEGIN
	j := magpie_account_split_jid(jid);
	PERFORM 1 FROM accounts a WHERE a.host = j.host AND a.username = j.username FOR UPDATE;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'no such account: %', jid USING ERRCODE = 'no_data_found';
	END IF;
	PERFORM magpie_account_write_scram(j.host, j.username, password, iterations);
END;
$$;
COMMENT ON FUNCTION magpie_account_set_password(text, text, integer) IS
	'Replace the password of user@host (sessions are closed: NOTIFY password).';

CREATE FUNCTION magpie_account_set_disabled(jid text, value boolean)
RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
	j record;
BEGIN
	j := magpie_account_split_jid(jid);
	UPDATE accounts a SET disabled = value WHERE a.host = j.host AND a.username = j.username;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'no such account: %', jid USING ERRCODE = 'no_data_found';
	END IF;
END;
$$;
COMMENT ON FUNCTION magpie_account_set_disabled(text, boolean) IS
	'Internal: shared by magpie_account_disable and magpie_account_enable.';

CREATE FUNCTION magpie_account_disable(jid text) RETURNS void
LANGUAGE sql AS $$ SELECT magpie_account_set_disabled(jid, true) $$;
COMMENT ON FUNCTION magpie_account_disable(text) IS
	'Refuse logins for user@host and close its sessions (NOTIFY disabled).';

CREATE FUNCTION magpie_account_enable(jid text) RETURNS void
LANGUAGE sql AS $$ SELECT magpie_account_set_disabled(jid, false) $$;
COMMENT ON FUNCTION magpie_account_enable(text) IS 'Allow logins for user@host again.';

CREATE FUNCTION magpie_account_delete(jid text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
	j record;
BEGIN
	j := magpie_account_split_jid(jid);
	DELETE FROM accounts a WHERE a.host = j.host AND a.username = j.username;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'no such account: %', jid USING ERRCODE = 'no_data_found';
	END IF;
END;
$$;
COMMENT ON FUNCTION magpie_account_delete(text) IS
	'Delete user@host and its credentials (sessions closed: NOTIFY deleted).';

CREATE VIEW magpie_accounts_view AS
	SELECT a.username || '@' || a.host AS jid,
	       a.disabled,
	       a.created_at,
	       coalesce(array_agg(c.mechanism ORDER BY c.mechanism)
			FILTER (WHERE c.mechanism IS NOT NULL), '{}') AS mechanisms
	FROM accounts a
	LEFT JOIN scram_credentials c ON c.host = a.host AND c.username = a.username
	GROUP BY a.host, a.username, a.disabled, a.created_at;
COMMENT ON VIEW magpie_accounts_view IS
	'Owner: core. Accounts for operators: jid, disabled, created_at, SCRAM mechanisms.';

-- NOTIFY magpie_account '<op> <jid>' with op = disabled, deleted or
-- password, so the daemon closes the account's sessions at once. Identical
-- notifications in one transaction are delivered once by PostgreSQL.
CREATE FUNCTION magpie_account_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
	IF TG_TABLE_NAME = 'accounts' THEN
		IF TG_OP = 'DELETE' THEN
			PERFORM pg_notify('magpie_account',
					  'deleted ' || OLD.username || '@' || OLD.host);
		ELSIF NEW.disabled AND NOT OLD.disabled THEN
			PERFORM pg_notify('magpie_account',
					  'disabled ' || NEW.username || '@' || NEW.host);
		END IF;
	ELSE
		-- A new account's first credentials are no password change:
		-- created_at defaults to now(), the transaction's start time.
		PERFORM 1 FROM accounts a
			WHERE a.host = NEW.host AND a.username = NEW.username
			  AND a.created_at = now();
		IF NOT FOUND THEN
			PERFORM pg_notify('magpie_account',
					  'password ' || NEW.username || '@' || NEW.host);
		END IF;
	END IF;
	RETURN NULL;
END;
$$;
COMMENT ON FUNCTION magpie_account_notify() IS
	'Trigger: NOTIFY magpie_account ''<disabled|deleted|password> user@host''.';

CREATE TRIGGER accounts_notify
	AFTER UPDATE OF disabled OR DELETE ON accounts
	FOR EACH ROW EXECUTE FUNCTION magpie_account_notify();

CREATE TRIGGER scram_credentials_notify
	AFTER INSERT OR UPDATE ON scram_credentials
	FOR EACH ROW EXECUTE FUNCTION magpie_account_notify();
