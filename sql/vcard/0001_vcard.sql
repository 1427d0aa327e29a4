-- Owner: vcard (modules/vcard): vcard-temp (XEP-0054) and vCard-based
-- avatars (XEP-0153).
--
-- One vCard per account, the serialized <vCard xmlns='vcard-temp'/>
-- element. photo_hash is maintained by the daemon (SHA-1 hex of the
-- decoded PHOTO/BINVAL, '' when the vCard has no photo); operators edit xml
-- only. Inserting, deleting or changing xml sends NOTIFY magpie_vcard
-- '<user@host>': the daemon recomputes the hash and, when it changed,
-- re-broadcasts the user's presence with the new avatar hash.

CREATE TABLE vcard (
	host text NOT NULL,
	username text NOT NULL,
	xml text NOT NULL,
	photo_hash text,
	updated_at timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (host, username),
	FOREIGN KEY (host, username) REFERENCES accounts (host, username) ON DELETE CASCADE
);
COMMENT ON TABLE vcard IS
	'Owner: vcard. XEP-0054 vCard per account (xml: <vCard xmlns=''vcard-temp''>...). '
	'photo_hash: XEP-0153 SHA-1 hex of the photo, written by the daemon. '
	'Changes to xml NOTIFY magpie_vcard ''user@host''.';

CREATE FUNCTION magpie_vcard_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
	IF TG_OP = 'DELETE' THEN
		PERFORM pg_notify('magpie_vcard', OLD.username || '@' || OLD.host);
		RETURN OLD;
	END IF;
	IF TG_OP = 'UPDATE' AND NEW.xml IS NOT DISTINCT FROM OLD.xml
	   AND NEW.host = OLD.host AND NEW.username = OLD.username THEN
		RETURN NEW;
	END IF;
	PERFORM pg_notify('magpie_vcard', NEW.username || '@' || NEW.host);
	IF TG_OP = 'UPDATE' AND (NEW.host <> OLD.host OR NEW.username <> OLD.username) THEN
		PERFORM pg_notify('magpie_vcard', OLD.username || '@' || OLD.host);
	END IF;
	RETURN NEW;
END;
$$;
COMMENT ON FUNCTION magpie_vcard_notify() IS
	'Trigger: NOTIFY magpie_vcard ''user@host'' when a vCard is added, removed or its xml changes.';

CREATE TRIGGER vcard_notify AFTER INSERT OR UPDATE OR DELETE ON vcard
	FOR EACH ROW EXECUTE FUNCTION magpie_vcard_notify();
