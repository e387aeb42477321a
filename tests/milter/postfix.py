"""A private Postfix instance for end-to-end milter tests and benchmarks.

Postfix(base) writes a main.cf and master.cf under base/etc and starts `postfix -c`
on them, with its own queue and data directories, so it never touches (or needs) the
system's instance in /etc/postfix. It listens on loopback only, on two free ports:

  port_in    an smtpd for inbound mail (the milter verifies it);
  port_out   a second smtpd with -o milter_macro_daemon_name=ORIGINATING (the milter
             signs it), as a submission port would be set up.

Every recipient address local@domain of a test domain is delivered by virtual(8) to
its own Maildir base/mail/domain/local/ (a regexp table), as the unprivileged user
nobody; nothing is chrooted; Postfix logs to base/maillog (postlogd), so a failure can
be read back with maillog(). The instance always stops: stop() runs from a finally
block in the callers and from atexit.

Mail goes in with smtplib (send(), or an SMTP session from smtp()); delivered() polls
the Maildir's new/ until a message arrives or a timeout passes and returns its bytes
exactly as stored (Postfix stores LF line ends).

Standard library only: CI runs it with /usr/bin/python3 on a bare Debian 12. Needs root
(Postfix's master runs as root and drops to the postfix user).
"""

import atexit
import os
import pwd
import shutil
import smtplib
import socket
import subprocess
import time

POSTFIX = "/usr/sbin/postfix"
POSTCONF = "/usr/sbin/postconf"
DOMAINS = ("test.example", "example.net")
POOL = 2000  # recipients t0..t1999 of each domain, one Maildir each
HOSTNAME = "mx.test.example"


def available():
    """None when a private Postfix can run here, else why not."""
    if not os.path.exists(POSTFIX) or not os.path.exists(POSTCONF):
        return "postfix is not installed (%s)" % POSTFIX
    if os.geteuid() != 0:
        return "not root (Postfix's master must start as root)"
    try:
        pwd.getpwnam("postfix")
    except KeyError:
        return "no postfix user"
    return None


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


MASTER_CF = """\
# service type  private unpriv  chroot  wakeup  maxproc command + args
127.0.0.1:{port_in} inet n - n - {smtpd_procs} smtpd
127.0.0.1:{port_out} inet n - n - {smtpd_procs} smtpd
  -o milter_macro_daemon_name=ORIGINATING
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
virtual   unix  -       n       n       -       -       virtual
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


class Postfix:
    """One private instance under base (created; removed by stop() when remove=True).

    milter: the smtpd_milters value (e.g. unix:/path or inet:127.0.0.1:PORT), or None.
    default_action: milter_default_action, what Postfix does when the milter is down
    or answers garbage (accept, tempfail, reject). main: extra main.cf settings."""

    def __init__(self, base, milter=None, default_action="tempfail", main=None,
                 smtpd_procs=100, remove=True):
        self.base = os.path.abspath(base)
        self.etc = os.path.join(self.base, "etc")
        self.queue = os.path.join(self.base, "queue")
        self.data = os.path.join(self.base, "data")
        self.mail = os.path.join(self.base, "mail")
        self.log = os.path.join(self.base, "maillog")
        self.port_in = free_port()
        self.port_out = free_port()
        while self.port_out == self.port_in:
            self.port_out = free_port()
        self.remove = remove
        self.running = False
        nobody = pwd.getpwnam("nobody")
        # Postfix's daemons run as the postfix user and the delivery agent as nobody:
        # every directory on the way must be searchable by them (mkdtemp makes 0700).
        os.makedirs(self.etc, exist_ok=True)
        for d in (self.base, self.etc):
            os.chmod(d, 0o755)
        p = self.base
        while p != "/":
            p = os.path.dirname(p)
            if os.stat(p).st_mode & 0o001 == 0:
                raise RuntimeError("%s is not searchable by others: Postfix's daemons "
                                   "could not reach %s" % (p, self.base))
        # The queue directory must exist, owned by root; `postfix check` makes the
        # rest (its subdirectories, owned by postfix, and data_directory).
        os.makedirs(self.queue, mode=0o755, exist_ok=True)
        os.makedirs(self.mail, exist_ok=True)
        os.chown(self.mail, nobody.pw_uid, nobody.pw_gid)
        with open(os.path.join(self.etc, "vmailbox"), "w") as f:
            # local@domain -> domain/local/ (the trailing slash makes it a Maildir), for
            # a pool of names: virtual(8) refuses $1 substitution from a regexp table,
            # and texthash needs no postmap.
            for d in DOMAINS:
                for name in ["bench", "postmaster"] + ["t%d" % i for i in range(POOL)]:
                    f.write("%s@%s %s/%s/\n" % (name, d, d, name))
        self.next_rcpt = 0
        settings = {
            "compatibility_level": "3.6",
            "queue_directory": self.queue,
            "data_directory": self.data,
            "mail_owner": "postfix",
            "setgid_group": "postdrop",
            "myhostname": HOSTNAME,
            "mydomain": "test.example",
            "myorigin": "$myhostname",
            "mydestination": "",
            "relay_domains": "",
            "local_recipient_maps": "",
            "alias_maps": "",
            "alias_database": "",
            "inet_interfaces": "127.0.0.1",
            "inet_protocols": "ipv4",
            "mynetworks": "127.0.0.0/8",
            "smtpd_relay_restrictions": "permit_mynetworks, reject_unauth_destination",
            "smtpd_recipient_restrictions": "",
            "virtual_mailbox_domains": ", ".join(DOMAINS),
            "virtual_mailbox_base": self.mail,
            "virtual_mailbox_maps": "texthash:" + os.path.join(self.etc, "vmailbox"),
            "virtual_uid_maps": "static:%d" % nobody.pw_uid,
            "virtual_gid_maps": "static:%d" % nobody.pw_gid,
            "virtual_mailbox_limit": "0",
            "message_size_limit": str(100 * 1024 * 1024),
            # Mail from 127.0.0.1 is a "local" client by default, whose headers Postfix
            # rewrites and completes (From, Date, Message-ID): that would change signed
            # bytes. A remote client's are left as they are, as on a real MX.
            "local_header_rewrite_clients": "",
            "smtpd_milters": milter or "",
            "non_smtpd_milters": "",
            "milter_default_action": default_action,
            "milter_protocol": "6",
            "maillog_file": self.log,
            "maillog_file_prefixes": self.base,
            "biff": "no",
            "append_dot_mydomain": "no",
            "smtpd_banner": "$myhostname ESMTP",
            # No reverse DNS for 127.0.0.1 on a CI box without a resolver.
            "smtpd_peername_lookup": "no",
            "smtp_dns_support_level": "disabled",
            # Nothing leaves: bounces to test senders fail at once instead of queueing.
            "default_transport": "error:no outbound mail from the test instance",
            # The benchmark measures Postfix+milter, not the flow-control pause.
            "in_flow_delay": "0",
            "default_process_limit": "200",
            "queue_run_delay": "1s",
            "minimal_backoff_time": "1s",
            "maximal_backoff_time": "2s",
        }
        settings.update(main or {})
        self.settings = settings
        with open(os.path.join(self.etc, "main.cf"), "w") as f:
            for k, v in settings.items():
                f.write("%s = %s\n" % (k, v))
        with open(os.path.join(self.etc, "master.cf"), "w") as f:
            f.write(MASTER_CF.format(port_in=self.port_in, port_out=self.port_out,
                                     smtpd_procs=smtpd_procs))
        atexit.register(self.stop)

    # ---- control ----

    def _postfix(self, *args, timeout=120):
        return subprocess.run([POSTFIX, "-c", self.etc] + list(args), capture_output=True,
                              text=True, timeout=timeout)

    def check(self):
        """`postfix check` (creates the queue directories); returns (ok, its output)."""
        before = len(self.maillog())
        p = self._postfix("check")
        # postfix logs its complaints (to maillog_file), not to stderr.
        out = (p.stdout + p.stderr + self.maillog()[before:]).strip()
        return p.returncode == 0 and "fatal" not in out, out

    def start(self, timeout=30):
        ok, out = self.check()
        if not ok:
            raise RuntimeError("postfix check failed: " + out)
        p = self._postfix("start")
        if p.returncode != 0:
            raise RuntimeError("postfix start failed: %s%s\n%s" % (p.stdout, p.stderr,
                                                                   self.maillog()[-2000:]))
        self.running = True
        deadline = time.time() + timeout
        for port in (self.port_in, self.port_out):
            while True:
                try:
                    with smtplib.SMTP("127.0.0.1", port, timeout=10) as s:
                        s.noop()
                    break
                except (OSError, smtplib.SMTPException):
                    if time.time() > deadline:
                        raise RuntimeError("postfix does not answer on port %d:\n%s"
                                           % (port, self.maillog()[-2000:]))
                    time.sleep(0.1)
        return out

    def set(self, **kv):
        """Changes main.cf settings and reloads a running instance."""
        args = ["%s=%s" % (k, v) for k, v in kv.items()]
        p = subprocess.run([POSTCONF, "-c", self.etc, "-e"] + args, capture_output=True,
                           text=True, timeout=60)
        if p.returncode != 0:
            raise RuntimeError("postconf -e failed: " + p.stderr)
        self.settings.update(kv)
        if self.running:
            self.reload()

    def reload(self):
        p = self._postfix("reload")
        if p.returncode != 0:
            raise RuntimeError("postfix reload failed: " + p.stderr)
        # New smtpd processes read the new settings; the reload itself is asynchronous
        # (master re-reads on SIGHUP), so give it a moment before the next connection.
        time.sleep(1.0)

    def stop(self):
        """Stops the instance (idempotent); removes base when asked to at creation."""
        if self.running:
            self.running = False
            p = self._postfix("stop")
            if p.returncode != 0:
                self._postfix("abort")
            # postfix stop returns before every child has gone; wait for master's pid.
            pidfile = os.path.join(self.queue, "pid", "master.pid")
            deadline = time.time() + 15
            while time.time() < deadline:
                try:
                    pid = int(open(pidfile).read().split()[0])
                    os.kill(pid, 0)
                except (OSError, ValueError, IndexError):
                    break
                time.sleep(0.1)
        if self.remove and os.path.isdir(self.base):
            shutil.rmtree(self.base, ignore_errors=True)
            self.remove = False

    def maillog(self):
        try:
            with open(self.log, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def queue_ids_in_log(self, text):
        return [l for l in self.maillog().splitlines() if text in l]

    def flush_queue(self):
        """Deletes every queued message (postsuper -d ALL), e.g. deferred leftovers."""
        subprocess.run(["/usr/sbin/postsuper", "-c", self.etc, "-d", "ALL"],
                       capture_output=True, timeout=60)

    # ---- mail ----

    def smtp(self, port=None, timeout=120):
        """An SMTP session to the inbound port (or port); the caller quits it."""
        s = smtplib.SMTP("127.0.0.1", port or self.port_in, timeout=timeout)
        s.ehlo("client.example")
        return s

    def send(self, msg, rcpt, sender="sender@client.example", port=None, session=None):
        """Sends msg (bytes, any line ends) to rcpt; returns the refused-recipient dict.
        Line ends are made CRLF first, as an SMTP client sends them (smtplib sends
        bytes as they are, and a bare LF on the wire is not SMTP). Raises smtplib's
        exceptions on a 4xx/5xx reply."""
        data = to_crlf(msg)
        own = session is None
        s = session or self.smtp(port)
        try:
            return s.sendmail(sender, [rcpt], data)
        finally:
            if own:
                try:
                    s.quit()
                except (OSError, smtplib.SMTPException):
                    s.close()

    def rcpt(self, domain=DOMAINS[0]):
        """A recipient address not used before by this instance (its own Maildir)."""
        if self.next_rcpt >= POOL:
            raise RuntimeError("recipient pool of %d exhausted" % POOL)
        self.next_rcpt += 1
        return "t%d@%s" % (self.next_rcpt - 1, domain)

    def maildir(self, rcpt):
        local, domain = rcpt.split("@", 1)
        return os.path.join(self.mail, domain, local)

    def delivered(self, rcpt, count=1, timeout=60):
        """The first count messages delivered to rcpt's Maildir (bytes, oldest first),
        waiting up to timeout seconds; fewer when they did not all arrive."""
        new = os.path.join(self.maildir(rcpt), "new")
        deadline = time.time() + timeout
        while True:
            try:
                names = os.listdir(new)
            except FileNotFoundError:
                names = []
            if len(names) >= count or time.time() > deadline:
                break
            time.sleep(0.02)
        paths = sorted((os.path.join(new, n) for n in names), key=os.path.getmtime)
        out = []
        for p in paths[:count]:
            with open(p, "rb") as f:
                out.append(f.read())
        return out

    def count_delivered(self, rcpt):
        try:
            return len(os.listdir(os.path.join(self.maildir(rcpt), "new")))
        except FileNotFoundError:
            return 0


def to_crlf(msg):
    return msg.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


# ---- message helpers shared by the tests and the benchmark ----

def header_fields(msg):
    """The header fields of msg as a list of raw bytes (each with its folded lines and
    line ends), and the rest (blank line + body)."""
    fields = []
    pos = 0
    while pos < len(msg):
        if msg.startswith(b"\r\n", pos) or msg.startswith(b"\n", pos):
            break
        nl = msg.find(b"\n", pos)
        end = len(msg) if nl < 0 else nl + 1
        line = msg[pos:end]
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1] += line
        else:
            fields.append(line)
        pos = end
    return fields, msg[pos:]


def field_name(field):
    return field.split(b":", 1)[0].strip().lower()


def unfold(field):
    """A field's value with folding removed and runs of white space made one space."""
    value = field.split(b":", 1)[1] if b":" in field else b""
    return latin1_fallback(b" ".join(value.split()))


def latin1_fallback(b):
    """UTF-8, with each invalid byte read as Latin-1: what dkimctl's JSON writes."""
    t = b.decode("utf-8", "surrogateescape")
    return "".join(chr(ord(ch) - 0xDC00) if 0xDC80 <= ord(ch) <= 0xDCFF else ch for ch in t)
