use std::path::Path;
use std::process::ExitCode;

use aftercare_core::flow::FlowSet;
use aftercare_core::render::Renderer;

/// Loads the folder the way the engine does; exit 1 with every problem when anything is wrong.
pub fn run(dir: &Path) -> ExitCode {
    let flows = match FlowSet::load_dir(dir) {
        Ok(flows) => flows,
        Err(errors) => {
            for e in &errors {
                eprintln!("error: {}/{e}", dir.display());
            }
            eprintln!("{} problem(s) in {}", errors.len(), dir.display());
            return ExitCode::from(1);
        }
    };
    if let Err(e) = Renderer::new(&flows) {
        eprintln!("error: {}/templates: {e}", dir.display());
        return ExitCode::from(1);
    }
    let templates: usize = flows.templates.values().map(|t| t.keys().filter(|n| !n.starts_with('_')).count()).sum();
    println!(
        "ok: {} flows, {} templates in {} locales ({})",
        flows.flows().len(),
        templates,
        flows.templates.len(),
        flows.templates.keys().cloned().collect::<Vec<_>>().join(", ")
    );
    ExitCode::SUCCESS
}
