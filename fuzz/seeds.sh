#!/usr/bin/env bash
# Regenerates the seed corpora fuzz/corpus/<target>/seed-* from exgate's own tests and
# files: the request targets, header values, cmdlet scripts and audit lines they use
# (extracted here), and the NTLM/SPNEGO tokens their builders make (examples/seeds.rs).
# The signed bearer seeds (seed-signed-*) are not regenerated: they are signed with the
# throwaway key whose public half is in fuzz_targets/bearer.rs, and the private half was
# not kept. Usage: fuzz/seeds.sh (from anywhere); needs python3 and cargo.
set -euo pipefail
cd "$(dirname "$0")"
corpus=$PWD/corpus
for t in authorization ntlm spnego target cmdlet audit_report kerberos decide; do
    mkdir -p "corpus/$t"
    rm -f "corpus/$t"/seed-*
done
mkdir -p corpus/bearer
find corpus/bearer -name 'seed-*' ! -name 'seed-signed-*' -delete

python3 - "$corpus" <<'PY'
import hashlib, json, os, re, sys
corpus = sys.argv[1]
root = os.path.dirname(corpus.rstrip('/'))
repo = os.path.dirname(root)

def src(*paths):
    out = []
    for p in paths:
        full = os.path.join(repo, p)
        if os.path.isdir(full):
            for f in sorted(os.listdir(full)):
                if f.endswith('.rs'):
                    out.append(open(os.path.join(full, f), encoding='utf-8').read())
        elif os.path.exists(full):
            out.append(open(full, encoding='utf-8').read())
    return '\n'.join(out)

def literals(text):
    """Rust string literals: "…" with escapes, and r"…" / r#"…"#."""
    found = []
    for m in re.finditer(r'r(#*)"(.*?)"\1', text, re.S):
        found.append(m.group(2))
    for m in re.finditer(r'(?<![r#\w])"((?:[^"\\\n]|\\.)*)"', text):
        s = m.group(1)
        s = re.sub(r'\\u\{([0-9a-fA-F]+)\}', lambda x: chr(int(x.group(1), 16)), s)
        s = s.replace('\\\\', '\x00').replace('\\n', '\n').replace('\\t', '\t')
        s = s.replace('\\r', '\r').replace('\\"', '"').replace('\\0', '\0').replace('\x00', '\\')
        found.append(s)
    return found

def write(target, data, prefix=b''):
    if isinstance(data, str):
        data = data.encode()
    data = prefix + data
    name = 'seed-' + hashlib.sha1(data).hexdigest()[:16]
    d = os.path.join(corpus, target)
    os.makedirs(d, exist_ok=True)
    open(os.path.join(d, name), 'wb').write(data)

tests = src('src/policy/attack_tests.rs', 'src/policy/path_tests.rs', 'src/policy/tests.rs',
            'src/policy/matrix_tests.rs', 'src/policy/engine.rs', 'tests/it', 'benches')
targets = {s for s in literals(tests)
           if (s.startswith(('/', '\\', 'http://', 'https://')) or s == '*')
           and '\n' not in s and len(s) < 300}
for t in sorted(targets):
    write('target', t)
# The Autodiscover v2 request facts: method, then Cookie values (SPEC §2).
write('target', b'/autodiscover/autodiscover.json?Email=user01@contoso.com&Protocol=ActiveSync\xffGET\xffEmail=a@b')
write('target', b'/autodiscover/autodiscover.json/v1.0/user01@contoso.com?Protocol=EWS\xffPOST\xffx=1; %45mail=x')

headers = set()
for s in literals(tests + src('src/auth/tests.rs', 'src/auth/digest.rs', 'src/proxy')):
    if re.match(r'(?i)^\s*(basic|bearer|ntlm|negotiate|digest)( |$)', s) and len(s) < 2000:
        headers.add(s)
headers |= {'Digest username="CONTOSO\\\\user01", realm="x", nonce="a,b"',
            'Digest realm="a,b", nonce=xyz, username=user01@contoso.com'}
for h in sorted(headers):
    write('authorization', h)

# Spellings Active Directory takes for one account (case, width, kana type, accents,
# characters without weight; look-alikes it tells apart; what exgate cannot weigh or
# confirm): Basic headers, and whole decisions with the name in Basic and as the
# connection's user (decide: target, Authorization, Cookie, user, split at 0xff).
import base64
spellings = ['ｕｓｅｒ０１@contoso.com', 'ＵＳＥＲ０１@Contoso.com', 'usér01@contoso.com',
             'use\u0301r01@contoso.com', 'user\u00ad01@contoso.com', 'user\u200b01@contoso.com',
             'user\u200d01', '\ufeffuser01@contoso.com', 'user01\ufe0f', 'user\U000e004101',
             'CONTOSO\\ｕｓｅｒ０１', 'ＣＯＮＴＯＳＯ＼ＵＳＥＲ０１', 'たなか@contoso.com', 'ﾀﾞﾅｶ',
             'straße', 'uѕer01@contoso.com', 'user01\U0001f600', 'user01@contoso.com.',
             'user01@contoso.com ', 'carol\u3000@contoso.com']
for name in spellings:
    header = 'Basic ' + base64.b64encode((name + ':P@ssw0rd!').encode()).decode()
    write('authorization', header)
    write('decide', b'/mapi/emsmdb/\xff' + header.encode() + b'\xff\xff' + name.encode())

scripts = [s for s in literals(src('src/policy/cmdlet/tests.rs', 'src/policy/tests.rs',
                                    'src/policy/attack_tests.rs', 'tests/it', 'fuzz/fuzz_targets'))
           if re.search(r'(?i)(-AuthenticationPolicy|Set-User|Set-OrganizationConfig)', s)]
for d in ('config', 'config/scenarios', 'deploy'):
    full = os.path.join(repo, d)
    if os.path.isdir(full):
        scripts += [open(os.path.join(full, f), encoding='utf-8').read()
                    for f in sorted(os.listdir(full)) if f.endswith('.ps1')]
for s in scripts:
    write('cmdlet', s)

report_tests = open(os.path.join(repo, 'src/report.rs'), encoding='utf-8').read()
lines = [l for s in literals(report_tests) for l in s.split('\n') if l.startswith('{"ts"')]
write('audit_report', '\n'.join(lines) + '\nnot json\n')
for l in lines:
    write('audit_report', l + '\n')
write('audit_report', '{"ts":"2026-11-25T09:08:00.000Z","event":"lockout","client_ip":"203.0.113.5","user":"user01@contoso.com"}\n'
      '{"ts":"2026-11-25T09:09:00.000Z","client_ip":"203.0.113.5","protocol":"Rpc","scheme":"ntlm","user":"CONTOSO\\\\user01","decision":"block","legacy":true,"user_agent":"MSRPC"}\n')

# bearer: first byte picks the mode (see fuzz_targets/bearer.rs).
for s in literals(tests + src('src/auth/tests.rs')):
    m = re.match(r'^Bearer (\S+\.\S+\.\S+)$', s)
    if m:
        write('bearer', m.group(1), b'0')
        write('bearer', s, b'1')
claims = re.findall(r'claims\(r#"(\{.*?\})"#\)', src('src/token/claims.rs'))
for c in claims:
    write('bearer', c, b'2')
for t in ('https://sts.windows.net/{tenantid}/', 'https://login.microsoftonline.com/{tenantid}/v2.0'):
    write('bearer', f'{t}\xff{t.replace("{tenantid}", "72f988bf-86f1-41af-91ab-2d7cd011db47")}\xff72f988bf-86f1-41af-91ab-2d7cd011db47'.encode('latin-1'), b'4')
write('bearer', 'https://adfs.contoso.com/adfs\xffhttps://adfs.contoso.com/adfs'.encode('latin-1'), b'4')
PY

# JWKS seed: the key set the bearer target validates against.
sed -n 's/^const JWKS: &str = r#"\(.*\)"#;$/3\1/p' fuzz_targets/bearer.rs > corpus/bearer/seed-jwks

cargo run --quiet --example seeds -- "$corpus"
for t in "$corpus"/*/; do
    printf '%-14s %4d seeds\n' "$(basename "$t")" "$(find "$t" -name 'seed-*' | wc -l)"
done
