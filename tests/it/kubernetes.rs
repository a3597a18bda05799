//! deploy/kubernetes/ (issue 15): no cluster is reachable here, so the manifests are
//! parsed (yaml-rust2) and checked against each other, against the Dockerfile and the
//! README that build the image, and against exgate itself: the ConfigMap's configuration
//! passes the real binary's `exgate validate` in a folder laid out as the pod's
//! /etc/exgate, with the environment the Deployment gives it.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use yaml_rust2::{Yaml, YamlLoader};

use crate::support::{repo, scratch, text};

fn folder() -> PathBuf {
    repo().join("deploy/kubernetes")
}

fn read(name: &str) -> String {
    std::fs::read_to_string(folder().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// Every document of one YAML file.
fn documents(name: &str, source: &str) -> Vec<Yaml> {
    YamlLoader::load_from_str(source)
        .unwrap_or_else(|e| panic!("{name}: not YAML: {e}"))
        .into_iter()
        .filter(|d| !d.is_null())
        .collect()
}

/// The files kustomization.yaml lists under `resources`.
fn resources() -> Vec<String> {
    let k = &documents("kustomization.yaml", &read("kustomization.yaml"))[0];
    k["resources"]
        .as_vec()
        .expect("kustomization.yaml: resources")
        .iter()
        .map(|r| r.as_str().expect("a resource is a file name").to_owned())
        .collect()
}

/// Every object of every manifest kustomization.yaml lists.
fn objects() -> Vec<Yaml> {
    resources()
        .iter()
        .flat_map(|f| documents(f, &read(f)))
        .collect()
}

/// The one object of `kind` named `name`.
fn object(kind: &str, name: &str) -> Yaml {
    let found: Vec<Yaml> = objects()
        .into_iter()
        .filter(|o| {
            o["kind"].as_str() == Some(kind) && o["metadata"]["name"].as_str() == Some(name)
        })
        .collect();
    assert_eq!(found.len(), 1, "{kind} {name}: {} found", found.len());
    found.into_iter().next().unwrap()
}

/// The value at a dotted path (`spec.template.spec`; a number indexes a list), or a
/// panic naming the path.
fn at<'a>(y: &'a Yaml, path: &str) -> &'a Yaml {
    let mut v = y;
    for part in path.split('.') {
        v = match part.parse::<usize>() {
            Ok(i) => &v[i],
            Err(_) => &v[part],
        };
        assert!(!v.is_badvalue(), "no {path} (at {part})");
    }
    v
}

fn string<'a>(y: &'a Yaml, path: &str) -> &'a str {
    at(y, path)
        .as_str()
        .unwrap_or_else(|| panic!("{path} is not a string"))
}

fn int(y: &Yaml, path: &str) -> i64 {
    at(y, path)
        .as_i64()
        .unwrap_or_else(|| panic!("{path} is not an integer"))
}

fn list<'a>(y: &'a Yaml, path: &str) -> &'a Vec<Yaml> {
    at(y, path)
        .as_vec()
        .unwrap_or_else(|| panic!("{path} is not a list"))
}

/// Whether every `matchLabels` (or plain selector) pair is among `labels`.
fn selects(selector: &Yaml, labels: &Yaml) -> bool {
    let pairs = selector.as_hash().expect("a selector is a map");
    !pairs.is_empty() && pairs.iter().all(|(k, v)| &labels[k.as_str().unwrap()] == v)
}

fn deployment() -> Yaml {
    object("Deployment", "exgate")
}

/// The Deployment's exgate container.
fn container(d: &Yaml) -> &Yaml {
    let containers = list(d, "spec.template.spec.containers");
    containers
        .iter()
        .find(|c| c["name"].as_str() == Some("exgate"))
        .expect("a container named exgate")
}

/// A container port given by number or by name, as a number.
fn container_port(c: &Yaml, port: &Yaml) -> i64 {
    if let Some(n) = port.as_i64() {
        return n;
    }
    let name = port.as_str().expect("a port is a number or a name");
    let ports = list(c, "ports");
    let p = ports
        .iter()
        .find(|p| p["name"].as_str() == Some(name))
        .unwrap_or_else(|| panic!("no container port named {name}"));
    int(p, "containerPort")
}

/// The container's command line: command then args.
fn command_line(c: &Yaml) -> Vec<String> {
    ["command", "args"]
        .iter()
        .filter(|k| !c[**k].is_badvalue())
        .flat_map(|k| list(c, k).iter())
        .map(|a| a.as_str().expect("command words are strings").to_owned())
        .collect()
}

/// The `--config` path of the container's `exgate serve`.
fn config_path(c: &Yaml) -> PathBuf {
    let line = command_line(c);
    let at = line
        .iter()
        .position(|w| w == "--config")
        .expect("serve --config PATH");
    PathBuf::from(&line[at + 1])
}

/// The ConfigMap's exgate.toml with the Deployment's literal `EXGATE__SECTION__KEY`
/// values over it, as exgate reads it in the pod.
fn pod_config() -> config::Config {
    let d = deployment();
    let cm = object("ConfigMap", "exgate-config");
    let toml = at(&cm, "data")["exgate.toml"]
        .as_str()
        .expect("the ConfigMap's exgate.toml");
    let mut b = config::Config::builder()
        .add_source(config::File::from_str(toml, config::FileFormat::Toml));
    for e in env(&d) {
        if let (Some(key), Some(value)) = (
            e["name"].as_str().and_then(|n| n.strip_prefix("EXGATE__")),
            e["value"].as_str(),
        ) {
            b = b
                .set_override(key.to_lowercase().replace("__", "."), value)
                .unwrap();
        }
    }
    b.build().expect("the ConfigMap's exgate.toml is TOML")
}

fn env(d: &Yaml) -> Vec<Yaml> {
    let c = container(d);
    if c["env"].is_badvalue() {
        return Vec::new();
    }
    list(c, "env").clone()
}

fn port_of(address: &str) -> i64 {
    let a: SocketAddr = address
        .parse()
        .unwrap_or_else(|_| panic!("{address}: not host:port"));
    i64::from(a.port())
}

#[test]
fn every_manifest_parses_and_the_kustomization_lists_each_once() {
    let listed = resources();
    let set: BTreeSet<String> = listed.iter().cloned().collect();
    assert_eq!(
        set.len(),
        listed.len(),
        "a resource listed twice: {listed:?}"
    );
    let on_disk: BTreeSet<String> = std::fs::read_dir(folder())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".yaml") && n != "kustomization.yaml")
        .collect();
    assert_eq!(set, on_disk, "kustomization.yaml's resources vs the folder");
    let mut kinds = BTreeSet::new();
    for o in objects() {
        string(&o, "apiVersion");
        string(&o, "metadata.name");
        kinds.insert(string(&o, "kind").to_owned());
    }
    let expected = [
        "ConfigMap",
        "Deployment",
        "HorizontalPodAutoscaler",
        "Namespace",
        "NetworkPolicy",
        "PodDisruptionBudget",
        "Service",
        "StatefulSet",
    ];
    assert_eq!(kinds, expected.iter().map(|k| k.to_string()).collect());
}

/// The files the volume mounted at the configuration's folder holds, written into a
/// scratch folder: the ConfigMap's keys as they are, and for the TLS Secret (made by the
/// operator, so not among the manifests) a fresh certificate and key.
fn pod_folder(d: &Yaml) -> PathBuf {
    let c = container(d);
    let folder = config_path(c).parent().unwrap().to_owned();
    let mount = list(c, "volumeMounts")
        .iter()
        .find(|m| Path::new(string(m, "mountPath")) == folder)
        .unwrap_or_else(|| panic!("no volume mounted at {}", folder.display()));
    let name = string(mount, "name");
    let volume = list(d, "spec.template.spec.volumes")
        .iter()
        .find(|v| v["name"].as_str() == Some(name))
        .unwrap_or_else(|| panic!("no volume {name}"));
    let sources: Vec<Yaml> = if volume["projected"].is_badvalue() {
        vec![volume.clone()]
    } else {
        list(volume, "projected.sources").clone()
    };
    let dir = scratch();
    let tls = rcgen::generate_simple_self_signed(vec!["mail.contoso.com".into()]).unwrap();
    for s in &sources {
        let (kind, source) = if !s["configMap"].is_badvalue() {
            ("ConfigMap", &s["configMap"])
        } else {
            ("Secret", &s["secret"])
        };
        let source_name = string(source, "name");
        let items: Vec<(String, String)> = if source["items"].is_badvalue() {
            let cm = object(kind, source_name);
            let data = at(&cm, "data").as_hash().unwrap();
            data.keys()
                .map(|k| {
                    (
                        k.as_str().unwrap().to_owned(),
                        k.as_str().unwrap().to_owned(),
                    )
                })
                .collect()
        } else {
            list(source, "items")
                .iter()
                .map(|i| (string(i, "key").to_owned(), string(i, "path").to_owned()))
                .collect()
        };
        for (key, path) in items {
            let content = match kind {
                "ConfigMap" => {
                    let cm = object(kind, source_name);
                    at(&cm, "data")[key.as_str()]
                        .as_str()
                        .unwrap_or_else(|| panic!("ConfigMap {source_name} has no {key}"))
                        .to_owned()
                }
                _ => match key.as_str() {
                    "tls.crt" => tls.cert.pem(),
                    "tls.key" => tls.signing_key.serialize_pem(),
                    other => panic!("what does key {other} of Secret {source_name} hold?"),
                },
            };
            let file = dir.join(&path);
            std::fs::create_dir_all(file.parent().unwrap()).unwrap();
            std::fs::write(file, content).unwrap();
        }
    }
    dir
}

#[test]
fn the_configmaps_configuration_passes_exgate_validate_in_the_pods_folder() {
    let d = deployment();
    let c = container(&d);
    let dir = pod_folder(&d);
    let config = dir.join(config_path(c).file_name().unwrap());
    assert!(config.exists(), "the volume holds no {}", config.display());
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_exgate"));
    cmd.args(["validate", "--print", "--config", config.to_str().unwrap()])
        .current_dir(&dir);
    for (key, _) in std::env::vars() {
        if key.starts_with("EXGATE") {
            cmd.env_remove(key);
        }
    }
    // The Deployment's environment; a Secret's value is a token of the length
    // `openssl rand -hex 32` makes.
    for e in env(&d) {
        let value = match e["value"].as_str() {
            Some(v) => v.to_owned(),
            None => {
                at(&e, "valueFrom.secretKeyRef.key");
                "0123456789abcdef".repeat(4)
            }
        };
        cmd.env(string(&e, "name"), value);
    }
    let out = cmd.output().unwrap();
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{stderr}{stdout}");
    // Every file it names is one the volume provides: no absolute path of the ConfigMap
    // points outside the folder (validate --print makes every path absolute).
    let dir_text = dir.to_str().unwrap();
    for line in stdout.lines() {
        if let Some((_, value)) = line.split_once("= \"/") {
            assert!(
                format!("/{value}").starts_with(dir_text),
                "a path outside the pod's folder: {line}"
            );
        }
    }
    // What exgate read is what the other tests here read.
    let printed: String = stdout
        .lines()
        .skip_while(|l| !l.starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n");
    let effective = config::Config::builder()
        .add_source(config::File::from_str(&printed, config::FileFormat::Toml))
        .build()
        .unwrap();
    let ours = pod_config();
    for key in ["server.listen", "server.admin_listen", "cluster.redis_url"] {
        assert_eq!(
            effective.get_string(key).unwrap(),
            ours.get_string(key).unwrap(),
            "{key}"
        );
    }
    assert_eq!(
        effective.get_int("server.shutdown_grace_seconds").unwrap(),
        ours.get_int("server.shutdown_grace_seconds").unwrap()
    );
    assert!(
        effective.get_string("admin.token").is_ok(),
        "admin.token is set from the Secret:\n{printed}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn probes_and_ports_are_the_configurations() {
    let d = deployment();
    let c = container(&d);
    let cfg = pod_config();
    let listen = port_of(&cfg.get_string("server.listen").unwrap());
    let admin = port_of(&cfg.get_string("server.admin_listen").unwrap());
    assert!(
        cfg.get_string("server.listen")
            .unwrap()
            .starts_with("0.0.0.0:")
            && cfg
                .get_string("server.admin_listen")
                .unwrap()
                .starts_with("0.0.0.0:"),
        "both listeners on every interface of the pod"
    );
    for (probe, path) in [("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")] {
        assert_eq!(string(c, &format!("{probe}.httpGet.path")), path, "{probe}");
        let port = container_port(c, at(c, &format!("{probe}.httpGet.port")));
        assert_eq!(port, admin, "{probe} on admin_listen's port");
    }
    let declared: BTreeSet<i64> = list(c, "ports")
        .iter()
        .map(|p| int(p, "containerPort"))
        .collect();
    assert_eq!(declared, BTreeSet::from([listen, admin]), "container ports");
    let s = object("Service", "exgate");
    assert!(selects(
        at(&s, "spec.selector"),
        at(&d, "spec.template.metadata.labels")
    ));
    let ports = list(&s, "spec.ports");
    assert_eq!(ports.len(), 1, "the Service exposes the proxy only");
    assert_eq!(container_port(c, at(&ports[0], "targetPort")), listen);
    assert_eq!(string(&s, "spec.sessionAffinity"), "None");
    assert_eq!(
        string(&s, "spec.externalTrafficPolicy"),
        "Local",
        "the client's address reaches exgate (lockout and spray count per address)"
    );
    // The NetworkPolicy opens the same two ports.
    let np = object("NetworkPolicy", "exgate");
    assert!(selects(
        at(&np, "spec.podSelector.matchLabels"),
        at(&d, "spec.template.metadata.labels")
    ));
    let opened: BTreeSet<i64> = list(&np, "spec.ingress")
        .iter()
        .flat_map(|r| list(r, "ports").iter())
        .map(|p| container_port(c, at(p, "port")))
        .collect();
    assert_eq!(opened, BTreeSet::from([listen, admin]));
}

#[test]
fn the_container_serves_the_mounted_configuration() {
    let d = deployment();
    let c = container(&d);
    let config = config_path(c);
    assert_eq!(
        command_line(c),
        [
            "/usr/bin/exgate",
            "serve",
            "--config",
            config.to_str().unwrap()
        ]
    );
    // The mount's volume projects the ConfigMap's exgate.toml at that name.
    let folder = config.parent().unwrap();
    let mount = list(c, "volumeMounts")
        .iter()
        .find(|m| Path::new(string(m, "mountPath")) == folder)
        .expect("a volume mounted at the configuration's folder");
    assert_eq!(at(mount, "readOnly").as_bool(), Some(true));
    let volume = list(&d, "spec.template.spec.volumes")
        .iter()
        .find(|v| v["name"] == mount["name"])
        .unwrap();
    let file = config.file_name().unwrap().to_str().unwrap();
    let projects_it = list(volume, "projected.sources").iter().any(|s| {
        s["configMap"]["name"].as_str() == Some("exgate-config")
            && list(&s["configMap"], "items").iter().any(|i| {
                i["key"].as_str() == Some("exgate.toml") && i["path"].as_str() == Some(file)
            })
    });
    assert!(
        projects_it,
        "{} is the ConfigMap's exgate.toml",
        config.display()
    );
    // The image puts the binary there and runs it the same way by default.
    let dockerfile = read("Dockerfile");
    assert!(
        dockerfile
            .lines()
            .any(|l| l.starts_with("COPY --from=build ") && l.ends_with(" /usr/bin/exgate")),
        "the Dockerfile installs /usr/bin/exgate"
    );
    assert!(dockerfile.contains(&format!(
        "ENTRYPOINT [\"/usr/bin/exgate\"]\nCMD [\"serve\", \"--config\", \"{}\"]",
        config.display()
    )));
}

/// The `-t IMAGE` of every `docker build` line of `source`.
fn built_tags(source: &str) -> Vec<String> {
    source
        .lines()
        .filter(|l| l.contains("docker build "))
        .map(|l| {
            let words: Vec<&str> = l.split_whitespace().collect();
            let t = words
                .iter()
                .position(|w| *w == "-t")
                .expect("docker build -t IMAGE");
            assert!(
                l.contains("-f deploy/kubernetes/Dockerfile"),
                "builds this Dockerfile: {l}"
            );
            words[t + 1].to_owned()
        })
        .collect()
}

#[test]
fn the_deployment_runs_the_image_the_dockerfile_builds() {
    let d = deployment();
    let c = container(&d);
    let image = string(c, "image");
    assert_eq!(
        image,
        format!("exgate:{}", env!("CARGO_PKG_VERSION")),
        "the tag is Cargo.toml's version"
    );
    let dockerfile = read("Dockerfile");
    let readme = read("README.md");
    let tags: Vec<String> = built_tags(&dockerfile)
        .into_iter()
        .chain(built_tags(&readme))
        .collect();
    assert!(
        tags.len() >= 2,
        "the Dockerfile and the README say how to build it"
    );
    for t in &tags {
        assert_eq!(t, image, "docker build -t");
    }
    // The builder is Cargo.toml's rust-version or later, on the runtime's Debian.
    let cargo = std::fs::read_to_string(repo().join("Cargo.toml")).unwrap();
    let msrv = cargo
        .lines()
        .find_map(|l| l.strip_prefix("rust-version = "))
        .unwrap()
        .trim_matches('"');
    let rust = dockerfile
        .lines()
        .find_map(|l| l.strip_prefix("ARG RUST_VERSION="))
        .expect("ARG RUST_VERSION=");
    let version = |v: &str| -> Vec<u32> { v.split('.').map(|n| n.parse().unwrap()).collect() };
    assert!(
        version(rust) >= version(msrv),
        "rust {rust} < rust-version {msrv}"
    );
    assert!(dockerfile.contains("FROM rust:${RUST_VERSION}-bookworm AS build"));
    assert!(dockerfile.contains("\nFROM debian:bookworm-slim\n"));
    assert!(dockerfile.contains("cargo build --release --locked"));
    // The image's user is the pod's.
    let user = dockerfile
        .lines()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("USER uid:gid");
    let (uid, gid) = user.split_once(':').expect("USER uid:gid, numeric");
    let pod = at(&d, "spec.template.spec.securityContext");
    assert_eq!(uid.parse::<i64>().unwrap(), int(pod, "runAsUser"));
    assert_eq!(gid.parse::<i64>().unwrap(), int(pod, "runAsGroup"));
    assert!(int(pod, "runAsUser") > 0);
}

/// The restricted Pod Security Standard's demands, on a pod template and its containers.
fn assert_restricted(name: &str, template: &Yaml) {
    let pod = at(template, "spec.securityContext");
    assert_eq!(at(pod, "runAsNonRoot").as_bool(), Some(true), "{name}");
    assert_eq!(
        string(pod, "seccompProfile.type"),
        "RuntimeDefault",
        "{name}"
    );
    for c in list(template, "spec.containers") {
        let s = at(c, "securityContext");
        assert_eq!(
            at(s, "allowPrivilegeEscalation").as_bool(),
            Some(false),
            "{name}"
        );
        assert_eq!(
            at(s, "readOnlyRootFilesystem").as_bool(),
            Some(true),
            "{name}"
        );
        assert_eq!(
            list(s, "capabilities.drop"),
            &vec![Yaml::String("ALL".into())],
            "{name}"
        );
        assert!(
            s["capabilities"]["add"].is_badvalue(),
            "{name}: no capability added"
        );
        string(c, "resources.limits.memory");
        string(c, "resources.requests.memory");
    }
}

#[test]
fn pods_run_as_non_root_read_only_without_capabilities_and_drain_in_time() {
    let d = deployment();
    assert_restricted("exgate", at(&d, "spec.template"));
    assert_restricted(
        "redis",
        at(&object("StatefulSet", "exgate-redis"), "spec.template"),
    );
    // The kubelet waits for the preStop pause and exgate's drain before SIGKILL.
    let c = container(&d);
    let pause: i64 = list(c, "lifecycle.preStop.exec.command")
        .iter()
        .map(|w| w.as_str().unwrap())
        .collect::<Vec<_>>()
        .as_slice()
        .split_first()
        .filter(|(first, _)| **first == "sleep")
        .map(|(_, rest)| rest[0].parse().unwrap())
        .expect("preStop: sleep N");
    let grace = pod_config()
        .get_int("server.shutdown_grace_seconds")
        .unwrap();
    let period = int(&d, "spec.template.spec.terminationGracePeriodSeconds");
    assert!(
        period >= pause + grace + 5,
        "terminationGracePeriodSeconds {period} < preStop {pause} + shutdown_grace_seconds {grace} + 5"
    );
    assert_eq!(int(&d, "spec.replicas"), 3);
    assert!(selects(
        at(&d, "spec.selector.matchLabels"),
        at(&d, "spec.template.metadata.labels")
    ));
}

#[test]
fn the_admin_token_comes_from_the_secret_the_kustomization_generates() {
    let d = deployment();
    let token = env(&d)
        .into_iter()
        .find(|e| e["name"].as_str() == Some("EXGATE__ADMIN__TOKEN"))
        .expect("EXGATE__ADMIN__TOKEN in the container's env");
    let name = string(&token, "valueFrom.secretKeyRef.name").to_owned();
    let key = string(&token, "valueFrom.secretKeyRef.key").to_owned();
    assert!(
        token["valueFrom"]["secretKeyRef"]["optional"].as_bool() != Some(true),
        "no pod starts without the token"
    );
    let k = &documents("kustomization.yaml", &read("kustomization.yaml"))[0];
    let generator = list(k, "secretGenerator")
        .iter()
        .find(|g| g["name"].as_str() == Some(&name))
        .unwrap_or_else(|| panic!("kustomization.yaml generates no Secret {name}"));
    let envs = list(generator, "envs");
    assert_eq!(envs.len(), 1);
    let file = envs[0].as_str().unwrap();
    // The file is the operator's, never committed, and the README's command writes the
    // key the Deployment reads into it.
    assert!(
        read(".gitignore").lines().any(|l| l == file),
        ".gitignore: {file}"
    );
    let readme = read("README.md");
    let writes = readme
        .lines()
        .filter(|l| l.contains(&format!("> deploy/kubernetes/{file}")))
        .collect::<Vec<_>>();
    assert!(!writes.is_empty(), "README: how to write {file}");
    for w in writes {
        assert!(w.contains(&format!("\"{key}=")), "{w} writes {key}=…");
    }
}

#[test]
fn the_autoscaler_and_the_disruption_budget_are_the_deployments() {
    let d = deployment();
    let pods = at(&d, "spec.template.metadata.labels");
    let hpa = object("HorizontalPodAutoscaler", "exgate");
    assert_eq!(string(&hpa, "apiVersion"), "autoscaling/v2");
    assert_eq!(
        string(&hpa, "spec.scaleTargetRef.apiVersion"),
        string(&d, "apiVersion")
    );
    assert_eq!(string(&hpa, "spec.scaleTargetRef.kind"), "Deployment");
    assert_eq!(
        string(&hpa, "spec.scaleTargetRef.name"),
        string(&d, "metadata.name")
    );
    let metrics = list(&hpa, "spec.metrics");
    assert!(metrics.iter().any(|m| {
        m["resource"]["name"].as_str() == Some("cpu")
            && m["resource"]["target"]["type"].as_str() == Some("Utilization")
    }));
    // Utilization is a share of the request, which must be there.
    string(container(&d), "resources.requests.cpu");
    let (min, max) = (int(&hpa, "spec.minReplicas"), int(&hpa, "spec.maxReplicas"));
    assert!(
        2 <= min && min <= int(&d, "spec.replicas") && min < max,
        "{min}..{max}"
    );

    let pdb = object("PodDisruptionBudget", "exgate");
    assert_eq!(string(&pdb, "apiVersion"), "policy/v1");
    assert!(selects(at(&pdb, "spec.selector.matchLabels"), pods));
    let redis = object("StatefulSet", "exgate-redis");
    let redis_pods = at(&redis, "spec.template.metadata.labels");
    assert!(!selects(at(&pdb, "spec.selector.matchLabels"), redis_pods));
    assert_eq!(int(&pdb, "spec.maxUnavailable"), 1);
}

#[test]
fn redis_is_where_the_cluster_url_points() {
    let url = pod_config().get_string("cluster.redis_url").unwrap();
    let rest = url.strip_prefix("redis://").expect("redis://host:port/db");
    let authority = rest.split('/').next().unwrap();
    assert!(
        !authority.contains('@'),
        "no password in the ConfigMap: {url}"
    );
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) => (h, p.parse::<i64>().unwrap()),
        None => (authority, 6379),
    };
    let service = object("Service", host);
    let ports = list(&service, "spec.ports");
    let p = ports
        .iter()
        .find(|p| p["port"].as_i64() == Some(port))
        .unwrap_or_else(|| panic!("Service {host} has no port {port}"));
    let sts = object("StatefulSet", "exgate-redis");
    let pods = at(&sts, "spec.template.metadata.labels");
    assert!(selects(at(&service, "spec.selector"), pods));
    assert!(!selects(
        at(&service, "spec.selector"),
        at(&deployment(), "spec.template.metadata.labels")
    ));
    assert_eq!(string(&sts, "spec.serviceName"), host);
    assert_eq!(int(&sts, "spec.replicas"), 1);
    let redis = &list(&sts, "spec.template.spec.containers")[0];
    assert_eq!(container_port(redis, at(p, "targetPort")), 6379);
    let image = string(redis, "image");
    assert!(
        image == "redis:7" || image.starts_with("redis:7."),
        "{image}"
    );
    let args: Vec<&str> = list(redis, "args")
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert!(
        args.windows(2).any(|w| w == ["--appendonly", "yes"]),
        "appendonly yes: {args:?}"
    );
    let data = args
        .windows(2)
        .find(|w| w[0] == "--dir")
        .map_or("/data", |w| w[1]);
    assert!(
        list(redis, "volumeMounts")
            .iter()
            .any(|m| m["mountPath"].as_str() == Some(data)),
        "Redis's {data} is on the volume"
    );
    // Only exgate's pods reach it.
    let np = object("NetworkPolicy", host);
    assert!(selects(at(&np, "spec.podSelector.matchLabels"), pods));
    let rules = list(&np, "spec.ingress");
    assert_eq!(rules.len(), 1);
    let from = list(&rules[0], "from");
    assert_eq!(from.len(), 1);
    assert!(selects(
        at(&from[0], "podSelector.matchLabels"),
        at(&deployment(), "spec.template.metadata.labels")
    ));
    assert_eq!(container_port(redis, at(&rules[0], "ports.0.port")), 6379);
}

/// `kubectl kustomize` (kustomize inside kubectl, no cluster needed) builds the folder
/// with an admin-token.env, and the Deployment then reads the generated Secret. Where
/// kubectl is not installed this says so and checks nothing.
#[test]
fn kustomize_builds_the_folder_and_the_deployment_reads_the_generated_secret() {
    let Ok(version) = Command::new("kubectl")
        .args(["version", "--client"])
        .output()
    else {
        eprintln!("kubectl not found: kustomize build not checked");
        return;
    };
    assert!(version.status.success());
    let dir = scratch();
    for entry in std::fs::read_dir(folder()).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.join(entry.file_name())).unwrap();
    }
    std::fs::write(
        dir.join("admin-token.env"),
        format!("token={}\n", "ab".repeat(32)),
    )
    .unwrap();
    let out = Command::new("kubectl")
        .arg("kustomize")
        .arg(&dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let built = documents("kubectl kustomize", &text(&out.stdout));
    for o in &built {
        if string(o, "kind") != "Namespace" {
            assert_eq!(string(o, "metadata.namespace"), "exgate", "{o:?}");
        }
    }
    let secret = built
        .iter()
        .find(|o| string(o, "kind") == "Secret")
        .expect("the generated Secret");
    let d = built
        .iter()
        .find(|o| string(o, "kind") == "Deployment")
        .unwrap();
    let token = env(d)
        .into_iter()
        .find(|e| e["name"].as_str() == Some("EXGATE__ADMIN__TOKEN"))
        .unwrap();
    assert_eq!(
        string(&token, "valueFrom.secretKeyRef.name"),
        string(secret, "metadata.name")
    );
    let key = string(&token, "valueFrom.secretKeyRef.key");
    assert!(
        !at(secret, "data")[key].is_badvalue(),
        "the Secret has {key}"
    );
    let _ = std::fs::remove_dir_all(dir);
}
