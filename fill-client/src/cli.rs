//! Command-line arguments, as clap parses them.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// `--verify-threads` of `fill run` and `fill prefill`.
const VERIFY_THREADS: &str = "Threads that verify blocks while the next ones are read: for a \
    stream faster than one core hashes (BLAKE3 runs at about 3 GB/s per core with AVX2, 6 with \
    AVX-512; 100 Gbps is 12.5 GB/s), such as a folder on fast storage or a 100G link. 0, the \
    default, verifies each block on the task that reads it, which costs the least CPU";

/// fill: content fill and catalog distribution for cache appliances.
///
/// Computes what a stale appliance must fetch to reach its region's target catalog, and keeps
/// stores of BLAKE3-verified content (ids are exactly what `b3sum` prints).
///
/// Exit codes: 0 success (also when stdout's reader went away), 1 error, 2 bad arguments
/// (a value that does not parse, a size without a unit, a path that is not a store, a log
/// file that cannot be opened), 3 verification found bad data, 4 a turn-up check failed,
/// 5 interrupted (ctrl-c or SIGTERM during a fill: what was verified and recorded is kept,
/// and the same command resumes).
///
/// Logs: -v/-q, --log-file, --log-format json, or FILL_LOG (a filter such as `debug`).
/// Progress: bars on a terminal, else a line every FILL_PROGRESS_EVERY (default 5s).
#[derive(Debug, Parser)]
#[command(name = "fill", version, propagate_version = true, max_term_width = 100)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
    /// Logging: -v/-q, --log-file, --log-format.
    #[command(flatten)]
    pub log: fill_store::logging::LogArgs,
}

/// The jobs.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the main job end to end on a small synthetic region, in a temporary directory.
    ///
    /// Builds a target catalog and a stale appliance (some files identical, some re-encoded,
    /// some missing, some retired), imports both into stores, computes the delta the burn-in
    /// fill must apply, and verifies every stored file against its id.
    Demo(DemoArgs),
    /// Manage a store: a directory of verified content (content/, outboard/, catalog).
    #[command(subcommand)]
    Store(StoreCommand),
    /// Build, inspect and export catalogs.
    #[command(subcommand)]
    Catalog(CatalogCommand),
    /// Compute what an appliance must fetch, evict and keep to hold its target.
    ///
    /// Placement: walk the target from the highest weight to the lowest (ties by id) and keep
    /// every file that still fits in the capacity. Files absent from the target are evicted
    /// first; evictions are scheduled so the store never holds more than the capacity.
    Delta(DeltaArgs),
    /// Fill a store to its target: delta, plan, then fetch every missing block from the
    /// cheapest sources, verified, resumable.
    ///
    /// Each block is checked against the file's BLAKE3 outboard as it streams in, written,
    /// synced, and only then recorded; a file enters the store when every block is in.
    /// Errors, stalls and bad data move a range to the next source; a source that sends 3 bad
    /// blocks is quarantined; bad data from an origin stops the run. Kill it at any moment
    /// and run the same command again: it continues where it stopped. When the store holds
    /// an older version of a new file (same name), the blocks they share at the same offsets
    /// are copied from it (verified again) instead of fetched, then it is evicted.
    #[command(after_long_help = SOURCES_HELP)]
    Run(RunArgs),
    /// Factory pre-fill: fill several stores at once from one source, each block fetched and
    /// verified once and written to every store.
    ///
    /// Meant for pre-fill stations filling many appliances from a local source at disk speed.
    /// Each store gets the target (or what fits its capacity), verified and resumable as with
    /// `fill run`.
    Prefill(PrefillArgs),
    /// Plan where each byte of the delta comes from, and when, at minimum money cost.
    ///
    /// The horizon (start to deadline) is cut into slots at midnights (UTC) and at the edges of
    /// the sources' windows. Each source delivers at most its bandwidth over its open time in
    /// each slot, the appliance takes at most --ingress; among the plans that fit, the cheapest
    /// (exactly: a min-cost flow), then the one that finishes earliest, with the most popular
    /// content first. When the deadline cannot be met, the plan says what binds and by how much,
    /// and gives the cheapest plan that finishes soonest. --explain puts it in plain words and
    /// compares it with escalation.
    #[command(after_long_help = SOURCES_HELP)]
    Plan(PlanArgs),
    /// A site's appliances filling together: `fill site status` (`fill run --site` fills).
    #[command(subcommand)]
    Site(SiteCommand),
    /// An appliance's lifecycle: its state and the events that brought it there.
    ///
    /// States: allocated, prefilling, in_transit, delivered, installed, burn_in, live,
    /// draining, drained, maintenance, retired. Events are kept in the store
    /// (.fill/state/events.jsonl); a store that never had any reports live.
    #[command(subcommand)]
    Appliance(ApplianceCommand),
    /// What install delay costs: bytes, money and days until live, for one appliance and for
    /// a fleet, from a seeded model of catalog churn run through the real delta and planner.
    ///
    /// Without --appliances: one appliance shipped on day 0, pre-filled with that day's
    /// target, installed after each delay in --delays (default 0..60). With --appliances N
    /// (or --delays-csv): a fleet of N appliances in sites, each site with its own ship day
    /// and install delay (uniform over --delays, or drawn from the CSV's real delays), planned
    /// alone and (unless --no-site-planning) with its site. Writes results.csv, results.json
    /// and charts (cost, days, bytes by tier vs delay; SVG and PNG) into --out, and prints a
    /// summary. The model and every default are in examples/simulate/default.toml and
    /// docs/simulation.md; the same seed gives the same files.
    Simulate(SimulateArgs),
    /// Benchmark tools: `fill bench dataset` writes a seeded media-like dataset.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Prints a completion script for a shell: `fill completions bash >
    /// /etc/bash_completion.d/fill`, or into zsh's fpath as `_fill`, or fish's
    /// completions directory as `fill.fish`.
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Writes the manual pages, `fill.1` and one per command (`fill-run.1`, ...), into a
    /// directory (made if missing); generated from the same definitions as `--help`.
    Man {
        /// Where to write them, e.g. /usr/local/share/man/man1.
        #[arg(long)]
        dir: PathBuf,
    },
}

/// `fill appliance ...`.
#[derive(Debug, Subcommand)]
pub enum ApplianceCommand {
    /// The current state and the recent events: of a store on this machine (--store), or of
    /// a running fill-server (--server: also its turn-up checks, fill progress and last fill,
    /// from URL/status.json, the same as the page at URL/status).
    #[command(group(clap::ArgGroup::new("which").required(true).args(["store", "server"])))]
    Status {
        /// The appliance's store.
        #[arg(long)]
        store: Option<PathBuf>,
        /// A running fill-server's base URL, e.g. http://127.0.0.1:7878.
        #[arg(long)]
        server: Option<String>,
        /// Print as JSON (with --server: the server's JSON as it is).
        #[arg(long)]
        json: bool,
    },
    /// Record a transition people make (allocated to start a lifecycle, then prefilling,
    /// in_transit when shipped, delivered, installed, burn_in, retired...). A transition the
    /// lifecycle does not allow is refused with the states that are allowed.
    Event {
        /// The appliance's store.
        #[arg(long)]
        store: PathBuf,
        /// The new state.
        state: String,
        /// Why, in words (kept with the event).
        #[arg(long, default_value = "")]
        reason: String,
        /// Print the event as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Run the turn-up checks now against the store: fill (target bytes complete, no bad
    /// block), offload (held share of the target's demand), store health (free space, no
    /// failed writes since burn-in began, a sample of blocks re-verified), sources (each
    /// answers its catalog). Exits with 4 when a check fails.
    ///
    /// The target is the copy `fill run` keeps in the store unless the config names one;
    /// the settings (threshold, sample size, sources file...) come from the server's config
    /// file's [lifecycle] section when --config is given, else the defaults.
    Checks {
        /// The appliance's store.
        #[arg(long)]
        store: PathBuf,
        /// The fill-server configuration file whose [lifecycle] settings apply.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Print as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Schedule a maintenance window: when it starts, the running fill-server drains (new
    /// content requests get 503 with Retry-After, those in flight finish), enters
    /// maintenance, and at its end goes back to burn_in, then live once the checks pass.
    Maintenance {
        /// The appliance's store.
        #[arg(long)]
        store: PathBuf,
        /// When it starts (RFC 3339, e.g. 2026-12-01T02:00:00Z); default now.
        #[arg(long)]
        start: Option<Moment>,
        /// How long: 3h to 30d (e.g. 6h, 2d).
        #[arg(long)]
        duration: MaintenanceLength,
        /// Why, in words (kept with the window and its events).
        #[arg(long, default_value = "maintenance")]
        reason: String,
    },
}

/// `fill simulate`.
#[derive(Debug, Args)]
pub struct SimulateArgs {
    /// The model (TOML; every field optional, defaults as in
    /// examples/simulate/default.toml).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Seed of the catalog's history and the fleet's draws (overrides the config's).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Install delays in days: A..B (inclusive) or a list like 0,3,7. Default 0..60; in
    /// fleet mode the range delays are drawn from (default: the config's).
    #[arg(long)]
    pub delays: Option<Delays>,
    /// Fleet mode: this many appliances.
    #[arg(long)]
    pub appliances: Option<u32>,
    /// Fleet mode with real install delays: a CSV with a `delay_days` column.
    #[arg(long)]
    pub delays_csv: Option<PathBuf>,
    /// Fleet mode: plan each appliance alone only, not also with its site (faster; no
    /// site-vs-alone comparison).
    #[arg(long)]
    pub no_site_planning: bool,
    /// The currency costs are in, for the summary and the charts (overrides the config's
    /// `currency`; default USD). A label only: the prices in the model are in it.
    #[arg(long)]
    pub currency: Option<String>,
    /// Folder for results.csv, results.json and the charts (created if missing).
    #[arg(long)]
    pub out: PathBuf,
    /// Print results.json on standard output instead of the summary.
    #[arg(long)]
    pub json: bool,
}

/// `fill plan`.
#[derive(Debug, Args)]
pub struct PlanArgs {
    /// The target catalog (raw or zstd).
    #[arg(long, required_unless_present = "site")]
    pub target: Option<PathBuf>,
    /// The appliance's store (its holdings and partial files; not modified).
    #[arg(long, required_unless_present_any = ["site", "inventory"])]
    pub store: Option<PathBuf>,
    /// Instead of --store: a catalog of what the appliance holds (planning without the
    /// appliance at hand, e.g. from an inventory it reported).
    #[arg(long, conflicts_with = "store")]
    pub inventory: Option<PathBuf>,
    /// The sources file (TOML; format at the end of `fill help plan`).
    #[arg(long, required_unless_present = "site")]
    pub sources: Option<PathBuf>,
    /// The appliance's capacity, with a unit (40TB, 512GiB; a number alone is refused).
    #[arg(long, required_unless_present = "site")]
    pub capacity: Option<Size>,
    /// Plan a whole site jointly instead (a TOML file naming the appliances, their stores,
    /// capacities and ingress, the shared sources and the in-site bandwidth; its format is in
    /// docs/planner.md): each range crosses a costly link once, the other appliances copy it.
    #[arg(long, conflicts_with_all = ["target", "store", "inventory", "sources", "capacity", "strategy"])]
    pub site: Option<PathBuf>,
    /// How long the fill may take, from --start: 48h, 14d, 1h30m.
    #[arg(long, default_value = "48h")]
    pub deadline: Deadline,
    /// When the fill starts, RFC 3339 (2026-11-28T02:00:00Z); default: now.
    #[arg(long)]
    pub start: Option<Moment>,
    /// The appliance's ingress cap, bits per second (1.2Gbps, 800Mbps); default: none.
    #[arg(long)]
    pub ingress: Option<Rate>,
    /// optimal (minimum cost) or escalation (the baseline).
    #[arg(long, value_enum, default_value_t = Strategy::Optimal)]
    pub strategy: Strategy,
    /// With --site: also write the plan for `fill run --site --plan` to this file.
    #[arg(long, requires = "site")]
    pub out: Option<PathBuf>,
    /// Print the plan as JSON (see docs/json.md).
    #[arg(long)]
    pub json: bool,
    /// Explain the plan in plain words: what binds, cost by tier, escalation's cost.
    #[arg(long)]
    pub explain: bool,
}

/// `fill site ...`.
#[derive(Debug, Subcommand)]
pub enum SiteCommand {
    /// How a site fill stands, read from every appliance's fill-server: bytes from outside
    /// against the plan, bytes copied inside, cost against the planned cost, what each
    /// appliance still lacks.
    Status {
        /// The site file (with each appliance's `url`).
        #[arg(long)]
        site: PathBuf,
        /// Print it as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `fill prefill`.
#[derive(Debug, Args)]
pub struct PrefillArgs {
    /// The target catalog (raw or zstd).
    #[arg(long)]
    pub target: PathBuf,
    /// The source: a store served over HTTP (fill-server, nginx, ...), or a published store
    /// on object storage (s3://bucket/prefix with the AWS_* environment, or file:///path).
    #[arg(long)]
    pub source: String,
    /// A store to fill (give it once per appliance): a store, or an empty directory (a new
    /// disk); any other path is refused.
    #[arg(long = "store", required = true)]
    pub stores: Vec<PathBuf>,
    /// Capacity of each store, with a unit (40TB, 512GiB); default: the whole target.
    #[arg(long)]
    pub capacity: Option<Size>,
    /// Space each store's filesystem keeps free: a file is begun only when its
    /// preallocation leaves this much (default: 1 GiB or 1% of the filesystem, whichever is
    /// smaller).
    #[arg(long)]
    pub reserve: Option<Size>,
    /// Concurrent requests to the source (as `max_connections` in a sources file).
    #[arg(long, default_value_t = 8)]
    pub max_connections: u32,
    /// How long the source may take to answer, or stay silent mid-body, before a request is
    /// retried.
    #[arg(long, default_value = "10s")]
    pub timeout: Timeout,
    /// How blocks are written (see `fill run --help`).
    #[arg(long, value_enum, default_value_t = WriterChoice::Auto)]
    pub writer: WriterChoice,
    #[arg(long, help = VERIFY_THREADS, default_value_t = 0,
          value_parser = clap::value_parser!(u16).range(0..=256))]
    pub verify_threads: u16,
    /// Report each appliance's pre-fill to the fleet's control plane at this URL (its
    /// start, progress every 5 s, and the catalog each ends up holding); needs
    /// --station-token and one --serial per --store.
    #[arg(long, value_name = "URL", requires = "station_token")]
    pub report_to: Option<String>,
    /// A file holding the station's token (`fill-control station add` makes one).
    #[arg(long, value_name = "FILE", requires = "report_to")]
    pub station_token: Option<PathBuf>,
    /// With --report-to: the serial of the appliance each --store is, in the same order.
    #[arg(long = "serial", value_name = "SERIAL")]
    pub serials: Vec<String>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// The sources file format, shown by `fill help run`.
const SOURCES_HELP: &str = "\
The sources file (TOML), one [[source]] per source:

  [[source]]
  name = \"peer-a\"                 # unique
  kind = \"peer\"                   # peer | tier | origin
  url = \"http://10.0.0.2:7878\"    # base URL of a store served over HTTP
  cost_per_gib = 0.0              # money per 2^30 bytes
  bandwidth = \"10Gbps\"            # cap for this source, all its connections together
  window = \"02:00-14:00\"          # optional daily window; absent = always open
  tz = \"Europe/Paris\"             # optional zone of the window: an IANA name (follows
                                  # daylight saving) or a UTC offset like \"+01:00\"; default UTC
  catalog = \"peer-a.catalog\"      # optional: what it holds, without asking it
  max_connections = 4             # optional, default 4

Without `catalog` the source is asked for GET {url}/catalog; an origin without one holds
everything.";

/// How ranges are assigned to sources.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Strategy {
    /// The cheapest source that holds the file and is inside its window, then the next.
    Escalation,
    /// Minimum-cost plan over capacities, windows, the ingress cap and the deadline (see
    /// `fill help plan`); each block goes first to its planned source, waiting for its window.
    Optimal,
}

/// `--writer`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum WriterChoice {
    /// io_uring with O_DIRECT if the probe passes, else positioned writes (and say so).
    Auto,
    /// io_uring with O_DIRECT, or fail.
    Uring,
    /// Positioned writes through the page cache.
    Pwrite,
}

/// `fill run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The target catalog (raw or zstd).
    #[arg(long, required_unless_present = "site")]
    pub target: Option<PathBuf>,
    /// The appliance's store: a store, or an empty directory (a new disk); any other path
    /// is refused. With --site: instead of the appliance's `store` in the site file.
    #[arg(long, required_unless_present = "site")]
    pub store: Option<PathBuf>,
    /// The sources file (TOML, `[[source]]` entries; its format is at the end of `fill help run`).
    #[arg(long, required_unless_present = "site")]
    pub sources: Option<PathBuf>,
    /// The appliance's capacity, with a unit (40TB, 512GiB; a number alone is refused).
    #[arg(long, required_unless_present = "site")]
    pub capacity: Option<Size>,
    /// Fill one appliance of a site together with the others (run it on each, at about
    /// the same time, each beside its fill-server): the site file `fill plan --site` reads,
    /// with each appliance's `url`. Each new byte crosses the costly link once, landing on
    /// one appliance; the others copy it from there block by block while it is still
    /// arriving (docs/site-fill.md).
    #[arg(long, requires = "appliance", conflicts_with_all = ["target", "sources", "capacity", "strategy", "dry_run"])]
    pub site: Option<PathBuf>,
    /// With --site: which appliance of the site file this is.
    #[arg(long, requires = "site")]
    pub appliance: Option<String>,
    /// With --site: the plan `fill plan --site --out` wrote, instead of planning here
    /// (every appliance must run the same plan; planned on each, they agree when they start
    /// within the same hour and see the same holdings).
    #[arg(long, requires = "site")]
    pub plan: Option<PathBuf>,
    /// With --site: how long a file copied from another appliance waits for it to make
    /// progress before it is taken from the next appliance ahead, and at last from outside.
    #[arg(long, default_value = "30s", requires = "site")]
    pub relay_patience: Timeout,
    /// Space the store's filesystem keeps free: a file is begun only when its
    /// preallocation leaves this much (default: 1 GiB or 1% of the filesystem, whichever is
    /// smaller).
    #[arg(long)]
    pub reserve: Option<Size>,
    /// How ranges are assigned to sources.
    #[arg(long, value_enum, default_value_t = Strategy::Escalation)]
    pub strategy: Strategy,
    /// With --strategy optimal: the deadline the plan aims for.
    #[arg(long, default_value = "48h")]
    pub deadline: Deadline,
    /// With --strategy optimal: the appliance's ingress cap (1.2Gbps); default: none.
    #[arg(long)]
    pub ingress: Option<Rate>,
    /// Print the plan (bytes and cost per source) and stop.
    #[arg(long)]
    pub dry_run: bool,
    /// How long a source may take to answer, or stay silent mid-body, before its range moves
    /// to the next source.
    #[arg(long, default_value = "10s")]
    pub timeout: Timeout,
    /// How blocks are written: io_uring with O_DIRECT when the store's file system takes it
    /// (auto), or always (uring, else fail), or positioned writes (pwrite).
    #[arg(long, value_enum, default_value_t = WriterChoice::Auto)]
    pub writer: WriterChoice,
    #[arg(long, help = VERIFY_THREADS, default_value_t = 0,
          value_parser = clap::value_parser!(u16).range(0..=256))]
    pub verify_threads: u16,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `fill demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Work in this directory (created) and keep it, instead of a temporary one.
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Seed of the synthetic region.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Number of files in the target catalog.
    #[arg(long, default_value_t = 60)]
    pub files: u32,
    /// A site instead: three appliances with different stale holdings, each with its own
    /// fill-server, fill together (`fill run --site` on each, at once) from one origin;
    /// prints the site plan, each appliance's fill and the site report.
    #[arg(long)]
    pub site: bool,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `fill bench ...`.
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Writes a seeded, media-like dataset for benchmarks: ROOT/target (the region's
    /// current files: renditions of 20-400 MiB and sidecars of 4 KiB-2 MiB, incompressible,
    /// no two blocks alike), ROOT/stale (what a late appliance was pre-filled with: ~70%
    /// of the target identical, ~5% re-encoded, ~5% patched — header rewritten, two 1 MiB
    /// blocks replaced, 12,345 bytes inserted mid-file, 4 MiB appended —, ~20% missing,
    /// and retired files the target no longer has), and ROOT/popularity.csv (name,weight,
    /// Zipf 0.9). The same seed gives the same bytes.
    Dataset {
        /// Where to write (created; must not hold a dataset already).
        #[arg(long)]
        root: PathBuf,
        /// About how much the target holds, in GiB.
        #[arg(long, default_value_t = 2.0)]
        total_gib: f64,
        /// The seed.
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Print what was written as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `fill store ...`.
#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Hash files and directories (recursively) into the store; idempotent.
    ///
    /// Each file is copied into content/<id> with its outboard in outboard/<id>, and added to
    /// the store's catalog with weight 0. A file's name is its path relative to the directory
    /// given (or its file name). Content already in the store is not copied again.
    Import {
        /// The store directory (created if missing).
        #[arg(long)]
        store: PathBuf,
        /// Block size for outboards: a power of two from 1KiB to 16MiB.
        #[arg(long, default_value = "1MiB")]
        block_size: Size,
        /// Print what was imported as JSON.
        #[arg(long)]
        json: bool,
        /// Files and directories to import.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
    /// List the store's files: complete ones from its catalog, and partially filled ones with
    /// their verified blocks.
    List {
        /// The store directory.
        #[arg(long)]
        store: PathBuf,
        /// Print a JSON array of {id, size, name, partial, ...}.
        #[arg(long)]
        json: bool,
    },
    /// Re-hash every file against its id; exit 3 if any is bad.
    Verify {
        /// The store directory.
        #[arg(long)]
        store: PathBuf,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
        /// Drop bad files from the store (and clear bad blocks of partial files), so the next
        /// fill fetches them again.
        #[arg(long)]
        repair: bool,
    },
    /// Upload a store to object storage, so a bucket can serve as a source (an origin).
    ///
    /// Uploads content/<id> and outboard/<id> of every complete file (8 at a time; files over
    /// 16 MiB in 16 MiB parts), skipping objects already there with the right size (so an
    /// interrupted publish resumes), then the catalog, last, so readers never see a catalog
    /// naming missing content. Credentials and settings from the environment:
    /// AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION, AWS_ENDPOINT_URL (an
    /// S3-compatible server), AWS_ALLOW_HTTP=true (plain HTTP to it).
    Publish {
        /// The store directory.
        #[arg(long)]
        store: PathBuf,
        /// Where: s3://bucket/prefix, or file:///path.
        #[arg(long)]
        to: String,
        /// Then re-read every object and check it against its id.
        #[arg(long)]
        verify: bool,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Output formats of `fill catalog export`.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ExportFormat {
    /// `id,size,weight,name` with a header line.
    Csv,
    /// An array of {id, size, weight, name}.
    Json,
}

/// `fill catalog ...`.
#[derive(Debug, Subcommand)]
pub enum CatalogCommand {
    /// Build a binary catalog from CSV, JSON, or a store plus a popularity CSV.
    #[command(group = clap::ArgGroup::new("input").required(true).args(["csv", "json", "store"]))]
    Build {
        /// CSV input with the header `id,size,weight,name`.
        #[arg(long)]
        csv: Option<PathBuf>,
        /// JSON input: an array of {id, size, weight, name}.
        #[arg(long)]
        json: Option<PathBuf>,
        /// Take entries from this store's catalog...
        #[arg(long, requires = "popularity")]
        store: Option<PathBuf>,
        /// ...with weights from this CSV (`name,weight`); names it lacks get weight 0.
        #[arg(long, requires = "store")]
        popularity: Option<PathBuf>,
        /// Output file. Ending in `.zst` writes it zstd-compressed (as it travels).
        #[arg(long)]
        out: PathBuf,
    },
    /// Summarize a catalog (raw or zstd) and list its most popular entries.
    Show {
        /// The catalog file.
        catalog: PathBuf,
        /// How many entries to list, most popular first.
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// Print as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Write every entry as CSV or JSON, in id order.
    Export {
        /// The catalog file.
        catalog: PathBuf,
        /// Output format.
        #[arg(long, value_enum, default_value_t = ExportFormat::Csv)]
        format: ExportFormat,
        /// Output file (default: standard output).
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

/// `fill delta`.
#[derive(Debug, Args)]
pub struct DeltaArgs {
    /// The target catalog (raw or zstd).
    #[arg(long)]
    pub target: PathBuf,
    /// The appliance's store.
    #[arg(long)]
    pub store: PathBuf,
    /// The appliance's capacity, with a unit (40TB, 512GiB; a number alone is refused).
    #[arg(long)]
    pub capacity: Size,
    /// Print the whole delta as JSON (see docs/json.md).
    #[arg(long)]
    pub json: bool,
}

/// A size in bytes, as people write it (`40TB`, `512GiB`, `4096B`; a number without a unit is
/// refused); parsed once, by clap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Size(pub u64);

impl std::str::FromStr for Size {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        fill_core::size::parse_size(s)
            .map(Size)
            .map_err(|e| e.to_string())
    }
}

/// How long a fill may take: a duration of at least a second, as whole seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadline(pub i64);

/// The longest deadline a plan takes: 366 days.
pub const MAX_DEADLINE_SECS: i64 = 366 * 86_400;

impl std::str::FromStr for Deadline {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let d = fill_core::duration::parse_duration(s).map_err(|e| e.to_string())?;
        let secs = i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
        if secs < 1 {
            return Err(format!("{s:?} is less than a second"));
        }
        // A plan's slots cut the horizon at midnights and windows: bounded, so is the plan.
        if secs > MAX_DEADLINE_SECS {
            return Err(format!(
                "{s:?} is more than the limit of 366d (a fill planned over more than a year)"
            ));
        }
        Ok(Deadline(secs))
    }
}

/// A maintenance window's length as written (`6h`, `2d`), checked to be 3h to 30d when
/// parsed, with the rule `MaintenanceWindow` applies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaintenanceLength(pub String);

impl std::str::FromStr for MaintenanceLength {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        fill_core::lifecycle::MaintenanceWindow::new(0, s, "check")?;
        Ok(MaintenanceLength(s.to_owned()))
    }
}

/// Install delays in days: `A..B` (inclusive) or a comma-separated list; sorted, without
/// repeats, at most 3650.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delays(pub Vec<u32>);

impl std::str::FromStr for Delays {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        let bad =
            || format!("{text:?}: expected A..B (inclusive, e.g. 0..60) or a list like 0,3,7");
        let t = text.trim();
        let mut out: Vec<u32> = if let Some((a, b)) = t.split_once("..") {
            let a: u32 = a.trim().parse().map_err(|_| bad())?;
            let b: u32 = b
                .trim()
                .trim_start_matches('=')
                .parse()
                .map_err(|_| bad())?;
            if a > b {
                return Err(bad());
            }
            (a..=b.min(3651)).collect()
        } else {
            t.split(',')
                .map(|s| s.trim().parse().map_err(|_| bad()))
                .collect::<Result<_, _>>()?
        };
        out.sort_unstable();
        out.dedup();
        if out.is_empty() {
            return Err(bad());
        }
        if out.last().is_some_and(|&d| d > 3650) {
            return Err(format!("{text:?}: at most 3650 days"));
        }
        Ok(Delays(out))
    }
}

/// How long a source may stay silent: a duration above zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeout(pub std::time::Duration);

impl std::str::FromStr for Timeout {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let d = fill_core::duration::parse_duration(s).map_err(|e| e.to_string())?;
        if d.is_zero() {
            return Err("must be more than zero".into());
        }
        Ok(Timeout(d))
    }
}

/// A rate in bits per second (`1.2Gbps`, `800Mbps`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate(pub u64);

impl std::str::FromStr for Rate {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        fill_core::source::parse_bandwidth(s)
            .map(Rate)
            .map_err(|e| e.to_string())
    }
}

/// A point in time, RFC 3339 (`2026-11-28T02:00:00Z`), as Unix seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Moment(pub i64);

impl std::str::FromStr for Moment {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        fill_core::duration::parse_rfc3339(s)
            .map(Moment)
            .map_err(|e| e.to_string())
    }
}
