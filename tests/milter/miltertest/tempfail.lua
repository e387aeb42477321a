-- daemon: --milter-on-temperror tempfail
-- A key lookup that fails temporarily: a REPLYCODE (451 4.4.3, its text checked by
-- milter_test.py: miltertest records no EOM operation for it), no header change.
dofile(os.getenv("DKD_MT_LIB"))
local conn = open()
message(conn, sample("09-temperror-dns.eml"))
expect(mt.getreply(conn) == SMFIR_REPLYCODE, "temperror: REPLYCODE")
expect(not mt.eom_check(conn, MT_HDRINSERT), "temperror: no header inserted")
mt.disconnect(conn)
