//! `aftercare preview`: every template × locale rendered with sample data, plus an
//! `index.html` gallery (subject, preheader, desktop and mobile widths, text part).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use aftercare_core::flow::FlowSet;
use aftercare_core::render::sample::{is_marketing, sample_send, template_names};
use aftercare_core::render::Renderer;

#[derive(clap::Args)]
pub struct PreviewArgs {
    /// The flows folder.
    #[arg(long, default_value = "flows")]
    flows: PathBuf,
    /// Only this template.
    #[arg(long)]
    template: Option<String>,
    /// Only this locale.
    #[arg(long)]
    locale: Option<String>,
    /// Where to write the gallery.
    #[arg(long, default_value = ".aftercare/preview")]
    out: PathBuf,
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

pub fn run(args: PreviewArgs) -> ExitCode {
    match preview(&args) {
        Ok(index) => {
            println!("{}", index.display());
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::from(1)
        }
    }
}

fn preview(args: &PreviewArgs) -> Result<PathBuf, String> {
    let flows = FlowSet::load_dir(&args.flows).map_err(|errors| errors.iter().map(|e| format!("{}/{e}", args.flows.display())).collect::<Vec<_>>().join("\n"))?;
    let renderer = Renderer::new(&flows).map_err(|e| e.to_string())?;
    let names: Vec<String> = template_names(&flows).into_iter().filter(|n| args.template.as_ref().is_none_or(|t| t == n)).collect();
    if names.is_empty() {
        return Err(format!("no template named {:?}", args.template.as_deref().unwrap_or_default()));
    }
    let locales: Vec<String> = flows.store.locales.iter().filter(|l| args.locale.as_ref().is_none_or(|want| want == *l)).cloned().collect();
    if locales.is_empty() {
        return Err(format!("locale {:?} is not in store.yaml locales {:?}", args.locale.as_deref().unwrap_or_default(), flows.store.locales));
    }
    let now = chrono::Utc::now();
    let mut cards = String::new();
    let mut count = 0;
    for name in &names {
        for locale in &locales {
            let Some(send) = sample_send(&flows, name, locale, now) else { continue };
            let unsubscribe = is_marketing(&flows, name).then(|| format!("{}/u/PREVIEW-TOKEN", flows.store.base_url));
            let activation = format!("{}/account/activate?token=PREVIEW-TOKEN", flows.store.base_url);
            let links = aftercare_core::render::Links { unsubscribe: unsubscribe.as_deref(), activation: Some(&activation) };
            let email = renderer.render(&send, links).map_err(|e| e.to_string())?;
            if email.locale != *locale {
                continue; // no template in this locale: the customer would get the default one
            }
            write_file(&args.out.join(locale).join(format!("{name}.html")), &email.html)?;
            write_file(&args.out.join(locale).join(format!("{name}.txt")), &email.text)?;
            count += 1;
            let src = format!("{locale}/{name}.html");
            let _ = write!(
                cards,
                r#"<section id="{locale}-{name}">
<h2>{name} <small>{locale} · {category} · {size} KB HTML</small></h2>
<p><b>Subject:</b> {subject}<br><b>Preheader:</b> {preheader}</p>
<div class="frames"><figure><figcaption>Desktop 600px</figcaption><iframe src="{src}" width="640" height="720" loading="lazy"></iframe></figure>
<figure><figcaption>Mobile 375px</figcaption><iframe src="{src}" width="375" height="720" loading="lazy"></iframe></figure>
<figure><figcaption>Text part</figcaption><pre>{text}</pre></figure></div>
</section>
"#,
                category = if unsubscribe.is_some() { "marketing" } else { "transactional" },
                size = email.html.len().div_ceil(1024),
                subject = escape(&email.subject),
                preheader = escape(&email.preheader),
                text = escape(&email.text),
            );
        }
    }
    let index = args.out.join("index.html");
    write_file(
        &index,
        &format!(
            r#"<!doctype html><html><head><meta charset="utf-8"><title>{store} — email preview</title>
<style>body{{font-family:system-ui,sans-serif;margin:1rem 2rem;background:#fafafa}}section{{background:#fff;margin:1.5rem 0;padding:1rem;border:1px solid #ddd}}
.frames{{display:flex;gap:1rem;align-items:flex-start;overflow-x:auto}}iframe{{border:1px solid #ccc;background:#fff}}pre{{white-space:pre-wrap;width:28rem;font-size:12px}}small{{color:#777;font-weight:normal}}</style></head>
<body><h1>{store}: {count} emails</h1><p>Sample data; marketing emails show the footer with the unsubscribe link.</p>
{cards}</body></html>
"#,
            store = escape(&flows.store.name)
        ),
    )?;
    Ok(index)
}

fn write_file(path: &Path, text: &str) -> Result<(), String> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    std::fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
}
