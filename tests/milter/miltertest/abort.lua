-- ABORT in the middle of a body: the message is dropped, the next one on the same
-- connection is judged on its own.
dofile(os.getenv("DKD_MT_LIB"))
local conn = open()
local body = begin_message(conn, sample("04-fail-body-altered.eml"))
if mt.bodystring(conn, body:sub(1, 10)) ~= nil then
	fail("body")
end
if mt.abort(conn) ~= nil then
	fail("abort")
end
message(conn, sample("01-pass-rsa2048.eml"))
expect(mt.getreply(conn) == SMFIR_CONTINUE, "after ABORT: CONTINUE")
expect(mt.eom_check(conn, MT_HDRINSERT, "Authentication-Results"), "after ABORT: the next message verified")
mt.disconnect(conn)
