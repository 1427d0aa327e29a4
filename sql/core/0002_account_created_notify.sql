-- Owner: core.
-- NOTIFY magpie_account 'created <jid>' when an account is inserted, by
-- any path (magpiectl, a module, SQL), so the daemon can fire user.created
-- the way it fires user.deleted on 'deleted'.
CREATE FUNCTION magpie_account_created_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
	PERFORM pg_notify('magpie_account', 'created ' || NEW.username || '@' || NEW.host);
	RETURN NULL;
END;
$$;
COMMENT ON FUNCTION magpie_account_created_notify() IS
	'Trigger: NOTIFY magpie_account ''created user@host''.';

CREATE TRIGGER accounts_created_notify
	AFTER INSERT ON accounts
	FOR EACH ROW EXECUTE FUNCTION magpie_account_created_notify();
