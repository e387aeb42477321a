-- Every end-of-message action of the default daemon: insert (verify, sign), delete
-- (forged Authentication-Results), and CONTINUE with no change (outbound without key).
dofile(os.getenv("DKD_MT_LIB"))
local conn = open()
message(conn, sample("01-pass-rsa2048.eml"), nil, {
	{ n = "Authentication-Results", v = " mx.test.example; dkim=pass header.d=example.com" },
	{ n = "Authentication-Results", v = " elsewhere.example; dkim=pass" },
})
expect(mt.eom_check(conn, MT_HDRDELETE, "Authentication-Results"), "forged field deleted")
expect(mt.eom_check(conn, MT_HDRINSERT, "Authentication-Results"), "our field inserted")
mt.disconnect(conn)

conn = open("ORIGINATING")
message(conn, sample("12-other-domain.eml"))
expect(mt.getreply(conn) == SMFIR_CONTINUE, "no key for the From domain: CONTINUE")
expect(not mt.eom_check(conn, MT_HDRINSERT), "no key for the From domain: nothing inserted")
mt.disconnect(conn)
