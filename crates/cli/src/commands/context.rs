//! `context ls|use|show|create|rm|inspect`, over the Docker config store.

use serde_json::{json, Value};

use super::{print, render};
use crate::args::ContextCommand;
use crate::client::{CliError, Result};
use crate::context::Store;

/// Docker's warning after `context ls` and `context use` when DOCKER_HOST is set.
fn warn_docker_host_overrides() {
    if std::env::var("DOCKER_HOST").is_ok_and(|h| !h.is_empty()) {
        eprintln!("Warning: DOCKER_HOST environment variable overrides the active context. To use a context, either set the global --context flag, or unset DOCKER_HOST environment variable.");
    }
}

pub fn run(store: &Store, command: ContextCommand) -> Result<()> {
    match command {
        ContextCommand::Ls(a) => {
            let current = std::env::var("DOCKER_CONTEXT")
                .ok()
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| store.current());
            let mut all = vec![store.get("default")?];
            all.extend(store.list());
            let rows: Vec<Value> = all
                .iter()
                .map(|c| {
                    json!({"Current": c.name == current, "Description": c.description,
                        "DockerEndpoint": c.host, "Error": "", "Name": c.name})
                })
                .collect();
            let header = json!({"Name": "NAME", "Description": "DESCRIPTION",
                "DockerEndpoint": "DOCKER ENDPOINT", "Error": "ERROR", "Current": false});
            let format = if a.quiet {
                "{{.Name}}".to_string()
            } else {
                a.format.clone().unwrap_or_else(|| {
                    "table {{.Name}}{{if .Current}} *{{end}}\t{{.Description}}\t{{.DockerEndpoint}}\t{{.Error}}".into()
                })
            };
            print(&render(&format, &header, &rows)?)?;
            warn_docker_host_overrides();
            Ok(())
        }
        ContextCommand::Use(a) => {
            store.get(&a.name)?;
            store.set_current(&a.name)?;
            println!("{}", a.name);
            eprintln!("Current context is now \"{}\"", a.name);
            warn_docker_host_overrides();
            Ok(())
        }
        ContextCommand::Show => {
            let name = std::env::var("DOCKER_CONTEXT")
                .ok()
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| store.current());
            println!("{name}");
            Ok(())
        }
        ContextCommand::Create(a) => {
            let host = match &a.docker {
                Some(spec) => spec
                    .split(',')
                    .find_map(|kv| kv.strip_prefix("host="))
                    .map(String::from)
                    .ok_or_else(|| {
                        CliError::other(format!("unable to parse docker endpoint \"{spec}\""))
                    })?,
                None => crate::client::DEFAULT_HOST.to_string(),
            };
            store.create(&a.name, &a.description, &host)?;
            println!("{}", a.name);
            eprintln!("Successfully created context \"{}\"", a.name);
            Ok(())
        }
        ContextCommand::Rm(a) => {
            let mut failed = false;
            for n in &a.names {
                if !a.force && n == &store.current() {
                    eprintln!("context \"{n}\" is in use, set -f flag to force remove");
                    failed = true;
                    continue;
                }
                match store.remove(n) {
                    Ok(()) => println!("{n}"),
                    Err(e) => {
                        eprintln!("{e}");
                        failed = true;
                    }
                }
            }
            if failed {
                return Err(CliError::Exit(1));
            }
            Ok(())
        }
        ContextCommand::Inspect(a) => {
            let names = if a.names.is_empty() {
                vec![store.current()]
            } else {
                a.names.clone()
            };
            let mut docs = Vec::new();
            for n in &names {
                let c = store.get(n)?;
                let mut meta = c.meta.clone();
                if let Some(obj) = meta.as_object_mut() {
                    obj.insert("TLSMaterial".into(), json!({}));
                    let (meta_path, tls_path) = if n == "default" {
                        ("<IN MEMORY>".to_string(), "<IN MEMORY>".to_string())
                    } else {
                        (
                            store.meta_dir(n).display().to_string(),
                            store.tls_dir(n).display().to_string(),
                        )
                    };
                    obj.insert(
                        "Storage".into(),
                        json!({"MetadataPath": meta_path, "TLSPath": tls_path}),
                    );
                }
                docs.push(meta);
            }
            match &a.format {
                Some(f) => {
                    let t = super::parse_template(f)?;
                    let mut out = String::new();
                    for d in &docs {
                        out.push_str(&t.execute(d).map_err(CliError::Other)?);
                        out.push('\n');
                    }
                    print(&out)
                }
                None => {
                    // Docker's field order: Name, Metadata, Endpoints, TLSMaterial, Storage.
                    let raw: Vec<Vec<u8>> = docs
                        .iter()
                        .map(|d| {
                            let field = |k: &str| {
                                d.get(k).map(Value::to_string).unwrap_or_else(|| "null".into())
                            };
                            format!(
                                "{{\"Name\":{},\"Metadata\":{},\"Endpoints\":{},\"TLSMaterial\":{},\"Storage\":{}}}",
                                field("Name"),
                                field("Metadata"),
                                field("Endpoints"),
                                field("TLSMaterial"),
                                field("Storage")
                            )
                            .into_bytes()
                        })
                        .collect();
                    print(&format!("{}\n", crate::format::indent_raw(&raw)))
                }
            }
        }
    }
}
