-- Owner: blocking (modules/blocking).
--
-- Block lists (XEP-0191): the JIDs each account blocks. The daemon caches
-- the list of every account with a session; the trigger below tells it
-- about each change (NOTIFY magpie_blocking '<user@host>'), and it applies
-- the change within a second: enforcement, pushes to the resources that
-- retrieved the list, presence to contacts. docs/admin.md, "Blocking".

CREATE TABLE blocklist (
	host text NOT NULL,
	username text NOT NULL,
	-- A JID as XEP-0191 §4 matches it: user@domain/resource, user@domain,
	-- domain/resource or domain (which also covers its subdomains).
	jid text NOT NULL CHECK (jid <> '' AND length(jid) <= 3071),
	created_at timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (host, username, jid),
	FOREIGN KEY (host, username) REFERENCES accounts (host, username) ON DELETE CASCADE
);
COMMENT ON TABLE blocklist IS
	'Owner: blocking. One row per JID an account (username@host) blocks (XEP-0191). '
	'Changes are applied live (NOTIFY magpie_blocking ''user@host'').';

CREATE FUNCTION magpie_blocking_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
	IF TG_OP IN ('DELETE', 'UPDATE') THEN
		PERFORM pg_notify('magpie_blocking', OLD.username || '@' || OLD.host);
	END IF;
	IF TG_OP IN ('INSERT', 'UPDATE') THEN
		PERFORM pg_notify('magpie_blocking', NEW.username || '@' || NEW.host);
	END IF;
	RETURN NULL;
END;
$$;
COMMENT ON FUNCTION magpie_blocking_notify() IS
	'Trigger: NOTIFY magpie_blocking ''user@host'' for the owner of each changed row.';

CREATE TRIGGER blocklist_notify
	AFTER INSERT OR UPDATE OR DELETE ON blocklist
	FOR EACH ROW EXECUTE FUNCTION magpie_blocking_notify();

CREATE VIEW magpie_blocklist_view AS
	SELECT username || '@' || host AS owner, jid, created_at
	FROM blocklist;
COMMENT ON VIEW magpie_blocklist_view IS
	'Owner: blocking. Block lists for operators: owner (bare JID), blocked jid, created_at.';

-- The part before '/' is lowercased (an approximation of nodeprep and
-- nameprep); a resource keeps its case.
CREATE FUNCTION magpie_blocking_add(owner text, blocked text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
	o record;
	j text := blocked;
BEGIN
	SELECT * INTO o FROM magpie_account_split_jid(owner);
	IF position('/' IN j) > 0 THEN
		j := lower(split_part(j, '/', 1)) || substr(j, position('/' IN j));
	ELSE
		j := lower(j);
	END IF;
	INSERT INTO blocklist (host, username, jid) VALUES (o.host, o.username, j)
		ON CONFLICT DO NOTHING;
END;
$$;
COMMENT ON FUNCTION magpie_blocking_add(text, text) IS
	'Block a JID for the account user@host (applied live to its sessions).';

CREATE FUNCTION magpie_blocking_remove(owner text, blocked text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
	o record;
	j text := blocked;
BEGIN
	SELECT * INTO o FROM magpie_account_split_jid(owner);
	IF position('/' IN j) > 0 THEN
		j := lower(split_part(j, '/', 1)) || substr(j, position('/' IN j));
	ELSE
		j := lower(j);
	END IF;
	DELETE FROM blocklist WHERE host = o.host AND username = o.username
		AND (jid = j OR jid = blocked);
END;
$$;
COMMENT ON FUNCTION magpie_blocking_remove(text, text) IS
	'Unblock a JID for the account user@host (applied live to its sessions).';
