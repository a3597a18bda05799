//! A real MIT Kerberos KDC on loopback, for the Kerberos tests (SPEC §3 "Kerberos").
//!
//! Debian's krb5-kdc, krb5-admin-server and krb5-user (`.ci/run` installs them). Every
//! file lives in a scratch folder: the realm's `krb5.conf` and `kdc.conf`, the database,
//! its stash, the logs, the credential caches and the keytabs. No system file is read or
//! written: each process gets `KRB5_CONFIG`, `KRB5_KDC_PROFILE`, `KRB5CCNAME` and
//! `KRB5_KTNAME` pointing into that folder, and the KDC listens on 127.0.0.1 only.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::support::{arg, scratch};

/// The realm the KDC serves: the Active Directory domain `contoso.com` of the tests'
/// `[[users]]`.
pub const REALM: &str = "CONTOSO.COM";

/// The users' principals and passwords, as created in every realm.
pub const USERS: [(&str, &str); 2] = [("user01", "Krb-Passw0rd-01"), ("user02", "Krb-Passw0rd-02")];

/// How long any one Kerberos tool, curl, or the KDC's start may take.
const BOUND: Duration = Duration::from_secs(10);

/// The enctypes the realm gives keys in and every client permits (MIT 1.20's defaults
/// leave RC4 out of `supported_enctypes`; later releases deprecate it further).
const ENCTYPES: &str = "aes256-cts-hmac-sha1-96 aes128-cts-hmac-sha1-96 arcfour-hmac";

/// Held from choosing a port until the KDC listens on it: MIT's KDC binds with
/// `SO_REUSEPORT`, so two KDCs of parallel tests could otherwise share one port.
static STARTING: Mutex<()> = Mutex::new(());

/// A running `krb5kdc -n` for [`REALM`], with [`USERS`], killed on drop.
pub struct Kdc {
    /// The scratch folder with the configuration, database, logs, caches and keytabs.
    pub dir: PathBuf,
    /// The port the KDC listens on, TCP and UDP, on 127.0.0.1.
    pub port: u16,
    child: Child,
}

/// A service ticket in a credential cache, as `klist -e` lists it.
#[derive(Debug, PartialEq, Eq)]
pub struct Ticket {
    /// The enctype of the key the ticket is encrypted in (the service's key), without
    /// MIT's `DEPRECATED:` prefix: `aes256-cts-hmac-sha1-96`, `arcfour-hmac`, …
    pub etype: String,
    /// The key version number of the service key, as `kvno` reported it.
    pub kvno: u32,
}

/// One entry of a keytab, as `klist -k -e` lists it.
#[derive(Debug, PartialEq, Eq)]
pub struct KeytabEntry {
    /// The key version number.
    pub kvno: u32,
    /// `HTTP/host@REALM`.
    pub principal: String,
    /// Without MIT's `DEPRECATED:` prefix.
    pub etype: String,
}

/// What a `curl --negotiate` run got back.
#[derive(Debug)]
pub struct CurlRun {
    /// The final HTTP status (0 when there was none).
    pub status: u16,
    /// curl's `-v` trace and errors, for failure messages.
    pub trace: String,
}

/// A finished process: exit code, stdout, stderr.
pub struct Finished {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Kdc {
    /// Creates the realm in a fresh scratch folder (`kdb5_util create -s`), adds
    /// [`USERS`] with their passwords, and starts `krb5kdc -n` on a free loopback port,
    /// waiting at most 10 s for it to listen. A port taken between choosing and binding
    /// makes the KDC exit; it is then started again on another port.
    pub fn start() -> Kdc {
        let mut dir = scratch();
        let starting = STARTING.lock().unwrap_or_else(|e| e.into_inner());
        let mut port = free_port();
        write_config(&dir, port);
        std::fs::write(dir.join("kadm5.acl"), "").unwrap();
        let created = run(
            env(
                Command::new(sbin("kdb5_util")),
                &dir,
                &dir.join("admin.ccache"),
            )
            .args(["create", "-s", "-r", REALM, "-P", "exgate-master-pw"]),
            None,
        );
        assert_eq!(
            created.code,
            Some(0),
            "kdb5_util create: {}",
            created.stderr
        );
        let mut failures = Vec::new();
        for _ in 0..5 {
            let _ = std::fs::remove_file(dir.join("kdc.log"));
            let child = env(
                Command::new(sbin("krb5kdc")),
                &dir,
                &dir.join("admin.ccache"),
            )
            .arg("-n")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("krb5kdc: apt-get install krb5-kdc (.ci/run does)");
            let mut kdc = Kdc { dir, port, child };
            match kdc.wait_listening() {
                Ok(()) => {
                    drop(starting);
                    for (user, password) in USERS {
                        kdc.kadmin(&format!("addprinc -pw {password} {user}"));
                    }
                    return kdc;
                }
                Err(why) => {
                    failures.push(format!("port {port}: {why}"));
                    dir = std::mem::take(&mut kdc.dir);
                    drop(kdc);
                    port = free_port();
                    write_config(&dir, port);
                }
            }
        }
        panic!("the KDC did not start: {failures:#?}");
    }

    /// Waits until the KDC's log says it serves, or it exited (its port was taken).
    fn wait_listening(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + BOUND;
        loop {
            let log = self.log();
            if log.contains("commencing operation") {
                return Ok(());
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                return Err(format!("krb5kdc exited with {status}: {log}"));
            }
            if Instant::now() > deadline {
                return Err(format!("krb5kdc not listening after {BOUND:?}: {log}"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The KDC's log so far (`kdc.log` in the folder), for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("kdc.log")).unwrap_or_default()
    }

    /// `krb5.conf` of the realm, for clients that are not started by this module.
    pub fn krb5_conf(&self) -> PathBuf {
        self.dir.join("krb5.conf")
    }

    /// Runs `kadmin.local -q QUERY` and returns its output; panics when it reports an
    /// error (kadmin.local exits 0 even then: its errors read `… while …`).
    pub fn kadmin(&self, query: &str) -> String {
        let out = run(
            env(
                Command::new(sbin("kadmin.local")),
                &self.dir,
                &self.dir.join("admin.ccache"),
            )
            .args(["-r", REALM, "-q", query]),
            None,
        );
        let failed = out.code != Some(0)
            || out
                .stderr
                .lines()
                .any(|l| l.contains(" while ") || l.contains("rror"));
        assert!(!failed, "kadmin.local -q '{query}': {}", out.stderr);
        out.stdout
    }

    /// Adds the service principal `HTTP/<host>` with a random key of `enctype` only
    /// (e.g. `aes128-cts-hmac-sha1-96`), so that every ticket for it is encrypted in that
    /// enctype.
    pub fn add_service(&self, host: &str, enctype: &str) {
        self.kadmin(&format!(
            "addprinc -randkey -e {enctype}:normal HTTP/{host}"
        ));
    }

    /// Gives `HTTP/<host>` a new random key of `enctype`: its key version goes up by one.
    pub fn rekey_service(&self, host: &str, enctype: &str) {
        self.kadmin(&format!("cpw -randkey -e {enctype}:normal HTTP/{host}"));
    }

    /// Writes the current keys of the services `HTTP/<host>` into a new keytab `name` in
    /// the folder and returns its path. `-norandkey`: a plain `ktadd` would give the
    /// principal new keys (and a new key version) on the way.
    pub fn export_keytab(&self, name: &str, hosts: &[&str]) -> PathBuf {
        let file = self.dir.join(name);
        let principals: Vec<String> = hosts.iter().map(|h| format!("HTTP/{h}")).collect();
        self.kadmin(&format!(
            "ktadd -k {} -norandkey {}",
            arg(&file),
            principals.join(" ")
        ));
        file
    }

    /// The entries of `keytab` (`klist -k -e`).
    pub fn keytab_entries(&self, keytab: &Path) -> Vec<KeytabEntry> {
        let out = self.tool(
            "klist",
            &self.dir.join("admin.ccache"),
            &["-k", "-e", arg(keytab)],
            None,
        );
        out.lines()
            .filter_map(|line| {
                let mut words = line.split_whitespace();
                let kvno = words.next()?.parse().ok()?;
                let principal = words.next()?.to_owned();
                let etype = words.next()?.trim_matches(['(', ')']);
                Some(KeytabEntry {
                    kvno,
                    principal,
                    etype: plain_etype(etype),
                })
            })
            .collect()
    }

    /// Signs `user` (one of [`USERS`]) in with `kinit`, the password on stdin, into a new
    /// credential cache file, and returns that file.
    pub fn kinit(&self, user: &str) -> PathBuf {
        let (_, password) = USERS
            .iter()
            .find(|(u, _)| *u == user)
            .unwrap_or_else(|| panic!("{user} is not one of {USERS:?}"));
        let ccache = self.dir.join(format!("{user}-{}.ccache", unique()));
        self.tool("kinit", &ccache, &[user], Some(&format!("{password}\n")));
        ccache
    }

    /// The service ticket for `HTTP/<host>` in `ccache` (`klist -e`), as a client that
    /// used the cache left it there, with its key version (`kvno`, which reads the cached
    /// ticket). Panics when the cache holds no ticket for that service.
    pub fn ticket(&self, ccache: &Path, host: &str) -> Ticket {
        let principal = format!("HTTP/{host}@{REALM}");
        let listing = self.tool("klist", ccache, &["-e"], None);
        let mut lines = listing.lines();
        let etype = loop {
            let line = lines
                .next()
                .unwrap_or_else(|| panic!("no ticket for {principal} in:\n{listing}"));
            if line.split_whitespace().any(|w| w == principal) {
                let etypes = lines
                    .next()
                    .and_then(|l| l.split_once("Etype (skey, tkt):"));
                let (_, etypes) = etypes.unwrap_or_else(|| panic!("{listing}"));
                let (_, tkt) = etypes
                    .split_once(',')
                    .unwrap_or_else(|| panic!("{listing}"));
                break plain_etype(tkt.trim());
            }
        };
        let out = self.tool("kvno", ccache, &[&format!("HTTP/{host}")], None);
        let kvno = out
            .rsplit_once("kvno = ")
            .and_then(|(_, n)| n.trim().parse().ok())
            .unwrap_or_else(|| panic!("kvno: {out}"));
        Ticket { etype, kvno }
    }

    /// `curl --negotiate -u :` with the tickets of `ccache`, to `http://<host>:<port><path>`
    /// where `host` resolves to `to` (`--resolve`: the connection stays on loopback while
    /// curl, through MIT's GSS-API, asks for a ticket for `HTTP/<host>`, the URL's host).
    pub fn curl_negotiate(&self, ccache: &Path, host: &str, to: SocketAddr, path: &str) -> CurlRun {
        let port = to.port();
        let mut curl = Command::new("curl");
        curl.env("KRB5_CONFIG", self.krb5_conf())
            .env("KRB5CCNAME", format!("FILE:{}", arg(ccache)))
            .env(
                "KRB5_KTNAME",
                format!("FILE:{}", arg(&self.dir.join("none.keytab"))),
            )
            .env_remove("KRB5_CLIENT_KTNAME")
            .env_remove("NTLM_USER_FILE")
            .args(["-sS", "-v", "--max-time", "10", "--noproxy", "*"])
            .args(["--negotiate", "-u", ":"])
            .arg("--resolve")
            .arg(format!("{host}:{port}:{}", to.ip()))
            .args(["-o", "/dev/null", "-w", "%{http_code}"])
            .arg(format!("http://{host}:{port}{path}"));
        let out = run(&mut curl, None);
        CurlRun {
            status: out.stdout.trim().parse().unwrap_or(0),
            trace: out.stderr,
        }
    }

    /// Runs a client tool (kinit, klist, kvno) with `ccache`; panics when it fails.
    fn tool(&self, program: &str, ccache: &Path, args: &[&str], stdin: Option<&str>) -> String {
        let out = run(
            env(Command::new(program), &self.dir, ccache).args(args),
            stdin,
        );
        assert_eq!(
            out.code,
            Some(0),
            "{program} {args:?}: {}{}\nlog of the KDC on 127.0.0.1:{}:\n{}",
            out.stdout,
            out.stderr,
            self.port,
            self.log()
        );
        out.stdout
    }
}

impl Drop for Kdc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The path of an administration tool: Debian puts krb5kdc, kdb5_util and kadmin.local in
/// /usr/sbin, which a non-root `PATH` may lack.
fn sbin(program: &str) -> PathBuf {
    let path = std::env::var("PATH").unwrap_or_default();
    path.split(':')
        .chain(["/usr/sbin", "/sbin"])
        .map(|dir| Path::new(dir).join(program))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| program.into())
}

/// A port that was free on 127.0.0.1 a moment ago.
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// A number unique within this test process.
fn unique() -> u32 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// `arcfour-hmac` for MIT's `DEPRECATED:arcfour-hmac`.
fn plain_etype(etype: &str) -> String {
    etype.trim_start_matches("DEPRECATED:").to_owned()
}

/// `krb5.conf` (clients and the KDC's library defaults) and `kdc.conf` for `port`.
fn write_config(dir: &Path, port: u16) {
    let d = arg(dir);
    let krb5 = format!(
        "[libdefaults]
 default_realm = {REALM}
 dns_lookup_kdc = false
 dns_lookup_realm = false
 rdns = false
 dns_canonicalize_hostname = false
 allow_weak_crypto = true
 permitted_enctypes = {ENCTYPES}
 udp_preference_limit = 1
 default_ccache_name = FILE:{d}/default.ccache
 default_keytab_name = FILE:{d}/none.keytab
 default_client_keytab_name = FILE:{d}/none-client.keytab
[realms]
 {REALM} = {{
  kdc = 127.0.0.1:{port}
  admin_server = 127.0.0.1:{port}
 }}
[domain_realm]
 .contoso.test = {REALM}
 contoso.test = {REALM}
"
    );
    let supported: Vec<String> = ENCTYPES.split(' ').map(|e| format!("{e}:normal")).collect();
    let kdc = format!(
        "[kdcdefaults]
 kdc_listen = 127.0.0.1:{port}
 kdc_tcp_listen = 127.0.0.1:{port}
[realms]
 {REALM} = {{
  database_name = {d}/principal
  key_stash_file = {d}/stash
  acl_file = {d}/kadm5.acl
  admin_keytab = FILE:{d}/kadm5.keytab
  kdc_listen = 127.0.0.1:{port}
  kdc_tcp_listen = 127.0.0.1:{port}
  supported_enctypes = {}
  max_life = 1h
 }}
[logging]
 kdc = FILE:{d}/kdc.log
 admin_server = FILE:{d}/kadmin.log
 default = FILE:{d}/krb5.log
",
        supported.join(" ")
    );
    std::fs::write(dir.join("krb5.conf"), krb5).unwrap();
    std::fs::write(dir.join("kdc.conf"), kdc).unwrap();
}

/// `command` with the realm's environment only: its configuration files, `ccache`, and
/// no keytab outside the folder.
fn env(mut command: Command, dir: &Path, ccache: &Path) -> Command {
    command
        .env("KRB5_CONFIG", dir.join("krb5.conf"))
        .env("KRB5_KDC_PROFILE", dir.join("kdc.conf"))
        .env("KRB5CCNAME", format!("FILE:{}", arg(ccache)))
        .env(
            "KRB5_KTNAME",
            format!("FILE:{}", arg(&dir.join("none.keytab"))),
        )
        .env(
            "KRB5_CLIENT_KTNAME",
            format!("FILE:{}", arg(&dir.join("none-client.keytab"))),
        )
        .env_remove("KRB5_TRACE");
    command
}

/// Runs `command` to its end, `stdin` written to it, killing it after [`BOUND`].
fn run(command: &mut Command, stdin: Option<&str>) -> Finished {
    run_bounded(command, stdin, BOUND)
}

/// Runs `command` to its end, `stdin` written to it, killing it (and failing the test)
/// after `bound`; its output is read on threads so that a full pipe never stalls it.
pub fn run_bounded(command: &mut Command, stdin: Option<&str>, bound: Duration) -> Finished {
    let program = format!("{command:?}");
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{program}: {e} (.ci/run installs the Kerberos tools)"));
    let mut input = child.stdin.take().unwrap();
    if let Some(text) = stdin {
        let _ = input.write_all(text.as_bytes());
    }
    drop(input);
    let reader = |mut stream: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stream.read_to_string(&mut text);
            text
        })
    };
    let stdout = reader(Box::new(child.stdout.take().unwrap()));
    let stderr = reader(Box::new(child.stderr.take().unwrap()));
    let deadline = Instant::now() + bound;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{program} took longer than {bound:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Finished {
        code: status.code(),
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
    }
}
