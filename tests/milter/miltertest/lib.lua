-- Shared by the miltertest scripts (run by tests/milter/miltertest_test.py, which sets
-- DKD_MILTER to the daemon's milter socket and DKD_SAMPLES to samples/).

function fail(what)
	mt.echo("FAIL: " .. what)
	os.exit(1)
end

function expect(cond, what)
	if not cond then
		fail(what)
	end
	mt.echo("ok: " .. what)
end

function readfile(path)
	local f = assert(io.open(path, "rb"))
	local d = f:read("*a")
	f:close()
	return d
end

-- open connects and negotiates with miltertest's defaults (libmilter's version 6
-- offer), then sends the connection's macros, CONNECT and HELO.
function open(daemon_name, ip)
	local conn = mt.connect(os.getenv("DKD_MILTER"), 40, 0.25)
	if conn == nil then
		fail("connect to " .. os.getenv("DKD_MILTER"))
	end
	if mt.negotiate(conn, nil, nil, nil) ~= nil then
		fail("negotiate")
	end
	mt.macro(conn, SMFIC_CONNECT, "{daemon_name}", daemon_name or "smtpd", "j", "mx.test.example")
	if mt.conninfo(conn, "client.example", ip or "192.0.2.1") ~= nil then
		fail("conninfo")
	end
	if mt.helo(conn, "client.example") ~= nil then
		fail("helo")
	end
	return conn
end

-- headers splits a message file into header fields (value with its leading space,
-- folds joined by LF, as Postfix passes them) and its body (CRLF line ends).
function split(path)
	local msg = readfile(path):gsub("\r\n", "\n")
	local head, body = msg:match("^(.-)\n\n(.*)$")
	local fields = {}
	for line in (head .. "\n"):gmatch("(.-)\n") do
		if line:match("^[ \t]") and #fields > 0 then
			fields[#fields].v = fields[#fields].v .. "\n" .. line
		else
			local n, v = line:match("^([^:]+):(.*)$")
			table.insert(fields, { n = n, v = v })
		end
	end
	return fields, body:gsub("\n", "\r\n")
end

-- begin_message sends MAIL (with extra MAIL-stage macros), RCPT and the header fields;
-- extra fields go first.
function begin_message(conn, path, mail_macros, extra)
	if mail_macros ~= nil then
		mt.macro(conn, SMFIC_MAIL, table.unpack(mail_macros))
	end
	if mt.mailfrom(conn, "<alice@example.com>") ~= nil then
		fail("mailfrom")
	end
	if mt.rcptto(conn, "<bob@example.net>") ~= nil then
		fail("rcptto")
	end
	local fields, body = split(path)
	for _, f in ipairs(extra or {}) do
		if mt.header(conn, f.n, f.v) ~= nil then
			fail("header " .. f.n)
		end
	end
	for _, f in ipairs(fields) do
		if mt.header(conn, f.n, f.v) ~= nil then
			fail("header " .. f.n)
		end
	end
	if mt.eoh(conn) ~= nil then
		fail("eoh")
	end
	return body
end

-- message sends a whole sample and its end; returns the connection for eom_check.
function message(conn, path, mail_macros, extra)
	local body = begin_message(conn, path, mail_macros, extra)
	if mt.bodystring(conn, body) ~= nil then
		fail("body")
	end
	if mt.eom(conn) ~= nil then
		fail("eom")
	end
	return conn
end

function sample(name)
	return os.getenv("DKD_SAMPLES") .. "/" .. name
end
