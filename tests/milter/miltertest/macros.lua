-- Macros decide the path: {daemon_name} ORIGINATING and {auth_authen} sign, a plain
-- inbound connection verifies; a message's macros do not carry over to the next.
dofile(os.getenv("DKD_MT_LIB"))
local conn = open("ORIGINATING")
message(conn, sample("03-none-unsigned.eml"))
expect(mt.getreply(conn) == SMFIR_CONTINUE, "ORIGINATING: CONTINUE")
expect(mt.eom_check(conn, MT_HDRINSERT, "DKIM-Signature"), "ORIGINATING: DKIM-Signature inserted")
expect(not mt.eom_check(conn, MT_HDRINSERT, "Authentication-Results"), "ORIGINATING: not verified")
mt.disconnect(conn)

conn = open("smtpd")
message(conn, sample("03-none-unsigned.eml"), { "{auth_authen}", "alice" })
expect(mt.eom_check(conn, MT_HDRINSERT, "DKIM-Signature"), "{auth_authen}: signed")
message(conn, sample("01-pass-rsa2048.eml"))
expect(mt.eom_check(conn, MT_HDRINSERT, "Authentication-Results"), "next message without {auth_authen}: verified")
expect(not mt.eom_check(conn, MT_HDRINSERT, "DKIM-Signature"), "next message: not signed")
mt.disconnect(conn)
