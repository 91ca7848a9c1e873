# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_titan_supervisor_global_optspecs
    string join \n socket= h/help V/version
end

function __fish_titan_supervisor_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_titan_supervisor_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_titan_supervisor_using_subcommand
    set -l cmd (__fish_titan_supervisor_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c titan-supervisor -n "__fish_titan_supervisor_needs_command" -l socket -d 'Control socket of the running daemon (default: [supervisor] socket of the config)' -r -F
complete -c titan-supervisor -n "__fish_titan_supervisor_needs_command" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c titan-supervisor -n "__fish_titan_supervisor_needs_command" -s V -l version -d 'Print version'
complete -c titan-supervisor -n "__fish_titan_supervisor_needs_command" -f -a "run" -d 'Run the supervisor in the foreground: start every service in dependency order, keep them running, stop them in reverse order on SIGTERM/SIGINT'
complete -c titan-supervisor -n "__fish_titan_supervisor_needs_command" -f -a "validate" -d 'Check a services.toml and report every problem at once (exit 0 valid, 2 invalid)'
complete -c titan-supervisor -n "__fish_titan_supervisor_needs_command" -f -a "graph" -d 'Show the dependency graph: tiers, dependencies and start layers (text) or Graphviz (dot)'
complete -c titan-supervisor -n "__fish_titan_supervisor_needs_command" -f -a "status" -d 'Show every service of the running daemon: state, pid, uptime, restarts, memory, health'
complete -c titan-supervisor -n "__fish_titan_supervisor_needs_command" -f -a "start" -d 'Start a service (held stopped, failed or exited) and wait until it is healthy'
complete -c titan-supervisor -n "__fish_titan_supervisor_needs_command" -f -a "stop" -d 'Stop a service and hold it stopped until `start`'
complete -c titan-supervisor -n "__fish_titan_supervisor_needs_command" -f -a "restart" -d 'Restart a service through its health gate and report the outcome'
complete -c titan-supervisor -n "__fish_titan_supervisor_needs_command" -f -a "reload" -d 'Re-read the config and apply only the difference (also SIGHUP to the daemon)'
complete -c titan-supervisor -n "__fish_titan_supervisor_needs_command" -f -a "events" -d 'Follow lifecycle events as JSON lines (one per state change) until interrupted'
complete -c titan-supervisor -n "__fish_titan_supervisor_needs_command" -f -a "upgrade" -d 'Re-execute the daemon\'s binary (a new version in its place) without stopping containers: native services are stopped in order, containers are adopted by the new process. Also SIGUSR2 to the daemon'
complete -c titan-supervisor -n "__fish_titan_supervisor_needs_command" -f -a "logs" -d 'Print a service\'s log (`supervisor` for the supervisor\'s own), from the log files'
complete -c titan-supervisor -n "__fish_titan_supervisor_needs_command" -f -a "demo" -d 'The built-in six-tier demo on native processes'
complete -c titan-supervisor -n "__fish_titan_supervisor_needs_command" -f -a "switch" -d 'Deploy a release: validate, pull, swap `current`, recreate what changed, verify; roll back to the last known good release by itself when anything fails'
complete -c titan-supervisor -n "__fish_titan_supervisor_needs_command" -f -a "rollback" -d 'Switch back to a release (default: the last known good) through the same pipeline'
complete -c titan-supervisor -n "__fish_titan_supervisor_needs_command" -f -a "releases" -d 'List the releases: current, last known good, bad marks, last outcome'
complete -c titan-supervisor -n "__fish_titan_supervisor_needs_command" -f -a "release" -d 'Make releases'
complete -c titan-supervisor -n "__fish_titan_supervisor_needs_command" -f -a "import-compose" -d 'Convert a docker compose file to a services.toml on stdout; what has no services.toml form is a warning on stderr naming the service and key'
complete -c titan-supervisor -n "__fish_titan_supervisor_needs_command" -f -a "import-pm2" -d 'Convert a PM2 ecosystem file (JSON, or plain-data ecosystem.config.js) to a services.toml on stdout; what has no services.toml form is a warning on stderr naming the app and key'
complete -c titan-supervisor -n "__fish_titan_supervisor_needs_command" -f -a "man" -d 'Print the man page, titan-supervisor(1), on stdout: one page with every command and its options (`man > /usr/local/share/man/man1/titan-supervisor.1`)'
complete -c titan-supervisor -n "__fish_titan_supervisor_needs_command" -f -a "completions" -d 'Print the completion script for SHELL on stdout (bash, zsh, fish, elvish, powershell)'
complete -c titan-supervisor -n "__fish_titan_supervisor_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c titan-supervisor -n "__fish_titan_supervisor_using_subcommand run" -l config -d 'The config (default: <current>/services.toml, else ./services.toml)' -r -F
complete -c titan-supervisor -n "__fish_titan_supervisor_using_subcommand run" -l log-format -d 'Format of the supervisor\'s own log on stderr' -r -f -a "text\t''
json\t''"
complete -c titan-supervisor -n "__fish_titan_supervisor_using_subcommand run" -l socket -d 'Control socket of the running daemon (default: [supervisor] socket of the config)' -r -F
complete -c titan-supervisor -n "__fish_titan_supervisor_using_subcommand run" -s h -l help -d 'Print help'
complete -c titan-supervisor -n "__fish_titan_supervisor_using_subcommand validate" -l socket -d 'Control socket of the running daemon (default: [supervisor] socket of the config)' -r -F
complete -c titan-supervisor -n "__fish_titan_supervisor_using_subcommand validate" -l json -d 'Print the result as JSON'
complete -c titan-supervisor -n "__fish_titan_supervisor_using_subcommand validate" -l allow-unpinned -d 'Accept images not pinned by digest, whatever `require_digests` says: a source config whose images `release create` pins'
complete -c titan-supervisor -n "__fish_titan_supervisor_using_subcommand validate" -s h -l help -d 'Print help'
complete -c titan-supervisor -n "__fish_titan_supervisor_using_subcommand graph" -l format -d 'Text for people, or Graphviz dot (`--format dot | dot -Tsvg`)' -r -f -a "text\t''
dot\t''"
complete -c titan-supervisor -n "__fish_titan_supervisor_using_subcommand graph" -l socket -d 'Control socket of the running daemon (default: [supervisor] socket of the config)' -r -F
complete -c titan-supervisor -n "__fish_titan_supervisor_using_subcommand graph" -s h -l help -d 'Print help'
complete -c titan-supervisor -n "__fish_titan_supervisor_using_subcommand status" -l socket -d 'Control socket of the running daemon (default: [supervisor] socket of the config)' -r -F
complete -c titan-supervisor -n "__fish_titan_supervisor_using_subcommand status" -l json -d 'Print the status as JSON'
complete -c titan-supervisor -n "__fish_titan_supervisor_using_subcommand status" -s h -l help -d 'Print help'
complete -c titan-supervisor -n "__fish_titan_supervisor_using_subcommand start" -l socket -d 'Control socket of the running daemon (default: [supervisor] socket of the config)' -r -F
complete -c titan-supervisor -n "__fish_titan_supervisor_using_subcommand start" -s h -l help -d 'Print help'
complete -c titan-supervisor -n "__fish_titan_supervisor_using_subcommand stop" -l socket -d 'Control socket of the running daemon (default: [supervisor] socket of the config)' -r -F
complete -c titan-supervisor -n "__fish_titan_supervisor_using_subcommand stop" -s h -l help -d 'Print help'
complete -c titan-supervisor -n "__fish_titan_supervisor_using_subcommand restart" -l socket -d 'Control socket of the running daemon (default: [supervisor] socket of the config)' -r -F
complete -c titan-supervisor -n "__fish_titan_supervisor_using_subcommand restart" -s h -l help -d 'Print help'
complete -c titan-supervisor -n "__fish_titan_supervisor_using_subcommand reload" -l socket -d 'Control socket of the running daemon (default: [supervisor] socket of the config)' -r -F
complete -c titan-supervisor -n "__fish_titan_supervisor_using_subcommand reload" -s h -l help -d 'Print help'
complete -c titan-supervisor -n "__fish_titan_supervisor_using_subcommand events" -l socket -d 'Control socket of the running daemon (default: [supervisor] socket of the config)' -r -F
complete -c titan-supervisor -n "__fish_titan_supervisor_using_subcommand events" -s h -l help -d 'Print help'
complete -c titan-supervisor -n "__fish_titan_supervisor_using_subcommand upgrade" -l socket -d 'Control socket of the running daemon (default: [supervisor] socket of the config)' -r -F
complete -c titan-supervisor -n "__fish_titan_supervisor_using_subcommand upgrade" -s h -l help -d 'Print help'
complete -c titan-supervisor -n "__fish_titan_supervisor_using_subcommand logs" -s n -l lines -d 'Only the last N lines (with -f and no -n: the last 10)' -r
complete -c titan-supervisor -n "__fish_titan_supervisor_using_subcommand logs" -l since -d 'Only lines from the last DUR (e.g. 10m, 2h)' -r
complete -c titan-supervisor -n "__fish_titan_supervisor_using_subcommand logs" -l config -d 'The config that says where the logs are (default: <current>/services.toml, else ./services.toml)' -r -F
complete -c titan-supervisor -n "__fish_titan_supervisor_using_subcommand logs" -l socket -d 'Control socket of the running daemon (default: [supervisor] socket of the config)' -r -F
complete -c titan-supervisor -n "__fish_titan_supervisor_using_subcommand logs" -s f -l follow -d 'Keep printing new lines as they are written, across rotations'
complete -c titan-supervisor -n "__fish_titan_supervisor_using_subcommand logs" -s h -l help -d 'Print help'
complete -c titan-supervisor -n "__fish_titan_supervisor_using_subcommand demo" -l dir -d 'Directory for the demo\'s logs, state and socket (default: a new temporary directory)' -r -F
complete -c titan-supervisor -n "__fish_titan_supervisor_using_subcommand demo" -l socket -d 'Control socket of the running daemon (default: [supervisor] socket of the config)' -r -F
complete -c titan-supervisor -n "__fish_titan_supervisor_using_subcommand demo" -l print-config -d 'Print the embedded demo services.toml and exit'
complete -c titan-supervisor -n "__fish_titan_supervisor_using_subcommand demo" -s h -l help -d 'Print help'
complete -c titan-supervisor -n "__fish_titan_supervisor_using_subcommand switch" -l socket -d 'Control socket of the running daemon (default: [supervisor] socket of the config)' -r -F
complete -c titan-supervisor -n "__fish_titan_supervisor_using_subcommand switch" -l json -d 'Pass the progress lines through as JSON'
complete -c titan-supervisor -n "__fish_titan_supervisor_using_subcommand switch" -l no-disarm -d 'Deploy without disarming execution over NATS (recorded in the evidence)'
complete -c titan-supervisor -n "__fish_titan_supervisor_using_subcommand switch" -s h -l help -d 'Print help'
complete -c titan-supervisor -n "__fish_titan_supervisor_using_subcommand rollback" -l socket -d 'Control socket of the running daemon (default: [supervisor] socket of the config)' -r -F
complete -c titan-supervisor -n "__fish_titan_supervisor_using_subcommand rollback" -l json -d 'Pass the progress lines through as JSON'
complete -c titan-supervisor -n "__fish_titan_supervisor_using_subcommand rollback" -s h -l help -d 'Print help'
complete -c titan-supervisor -n "__fish_titan_supervisor_using_subcommand releases" -l socket -d 'Control socket of the running daemon (default: [supervisor] socket of the config)' -r -F
complete -c titan-supervisor -n "__fish_titan_supervisor_using_subcommand releases" -l json -d 'Print the releases as JSON'
complete -c titan-supervisor -n "__fish_titan_supervisor_using_subcommand releases" -s h -l help -d 'Print help'
complete -c titan-supervisor -n "__fish_titan_supervisor_using_subcommand release; and not __fish_seen_subcommand_from create help" -l socket -d 'Control socket of the running daemon (default: [supervisor] socket of the config)' -r -F
complete -c titan-supervisor -n "__fish_titan_supervisor_using_subcommand release; and not __fish_seen_subcommand_from create help" -s h -l help -d 'Print help'
complete -c titan-supervisor -n "__fish_titan_supervisor_using_subcommand release; and not __fish_seen_subcommand_from create help" -f -a "create" -d 'Write a release directory: services.toml pinned from digests.json, digests.json, release.json, and with --sign a minisign signature of digests.json. Prints its path'
complete -c titan-supervisor -n "__fish_titan_supervisor_using_subcommand release; and not __fish_seen_subcommand_from create help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c titan-supervisor -n "__fish_titan_supervisor_using_subcommand release; and __fish_seen_subcommand_from create" -l config -d 'The source services.toml (images may be unpinned)' -r -F
complete -c titan-supervisor -n "__fish_titan_supervisor_using_subcommand release; and __fish_seen_subcommand_from create" -l digests -d '`{"<service>": "<repo>@sha256:<hex>", ...}` as CI produced it' -r -F
complete -c titan-supervisor -n "__fish_titan_supervisor_using_subcommand release; and __fish_seen_subcommand_from create" -l sha -d 'The commit the release is built from (its first 7 characters name the directory)' -r
complete -c titan-supervisor -n "__fish_titan_supervisor_using_subcommand release; and __fish_seen_subcommand_from create" -l sign -d 'A minisign secret key: digests.json is signed with it' -r -F
complete -c titan-supervisor -n "__fish_titan_supervisor_using_subcommand release; and __fish_seen_subcommand_from create" -l out -d 'Where to write the release (default: the config\'s `releases_dir`)' -r -F
complete -c titan-supervisor -n "__fish_titan_supervisor_using_subcommand release; and __fish_seen_subcommand_from create" -l socket -d 'Control socket of the running daemon (default: [supervisor] socket of the config)' -r -F
complete -c titan-supervisor -n "__fish_titan_supervisor_using_subcommand release; and __fish_seen_subcommand_from create" -s h -l help -d 'Print help'
complete -c titan-supervisor -n "__fish_titan_supervisor_using_subcommand release; and __fish_seen_subcommand_from help" -f -a "create" -d 'Write a release directory: services.toml pinned from digests.json, digests.json, release.json, and with --sign a minisign signature of digests.json. Prints its path'
complete -c titan-supervisor -n "__fish_titan_supervisor_using_subcommand release; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c titan-supervisor -n "__fish_titan_supervisor_using_subcommand import-compose" -l digests -d '`{"<service>": "<repo>@sha256:<hex>", ...}`: these images replace the file\'s' -r -F
complete -c titan-supervisor -n "__fish_titan_supervisor_using_subcommand import-compose" -l env-file -d 'Variables for interpolation (default: `.env` beside the compose file)' -r -F
complete -c titan-supervisor -n "__fish_titan_supervisor_using_subcommand import-compose" -l project -d '`[supervisor] project` (default: the file\'s `name:`, else its directory\'s name)' -r
complete -c titan-supervisor -n "__fish_titan_supervisor_using_subcommand import-compose" -l socket -d 'Control socket of the running daemon (default: [supervisor] socket of the config)' -r -F
complete -c titan-supervisor -n "__fish_titan_supervisor_using_subcommand import-compose" -s h -l help -d 'Print help'
complete -c titan-supervisor -n "__fish_titan_supervisor_using_subcommand import-pm2" -l env -d 'Merge the apps\' `env_NAME` over their `env`, as `pm2 start --env NAME` does' -r
complete -c titan-supervisor -n "__fish_titan_supervisor_using_subcommand import-pm2" -l socket -d 'Control socket of the running daemon (default: [supervisor] socket of the config)' -r -F
complete -c titan-supervisor -n "__fish_titan_supervisor_using_subcommand import-pm2" -s h -l help -d 'Print help'
complete -c titan-supervisor -n "__fish_titan_supervisor_using_subcommand man" -l socket -d 'Control socket of the running daemon (default: [supervisor] socket of the config)' -r -F
complete -c titan-supervisor -n "__fish_titan_supervisor_using_subcommand man" -s h -l help -d 'Print help'
complete -c titan-supervisor -n "__fish_titan_supervisor_using_subcommand completions" -l socket -d 'Control socket of the running daemon (default: [supervisor] socket of the config)' -r -F
complete -c titan-supervisor -n "__fish_titan_supervisor_using_subcommand completions" -s h -l help -d 'Print help'
complete -c titan-supervisor -n "__fish_titan_supervisor_using_subcommand help; and not __fish_seen_subcommand_from run validate graph status start stop restart reload events upgrade logs demo switch rollback releases release import-compose import-pm2 man completions help" -f -a "run" -d 'Run the supervisor in the foreground: start every service in dependency order, keep them running, stop them in reverse order on SIGTERM/SIGINT'
complete -c titan-supervisor -n "__fish_titan_supervisor_using_subcommand help; and not __fish_seen_subcommand_from run validate graph status start stop restart reload events upgrade logs demo switch rollback releases release import-compose import-pm2 man completions help" -f -a "validate" -d 'Check a services.toml and report every problem at once (exit 0 valid, 2 invalid)'
complete -c titan-supervisor -n "__fish_titan_supervisor_using_subcommand help; and not __fish_seen_subcommand_from run validate graph status start stop restart reload events upgrade logs demo switch rollback releases release import-compose import-pm2 man completions help" -f -a "graph" -d 'Show the dependency graph: tiers, dependencies and start layers (text) or Graphviz (dot)'
complete -c titan-supervisor -n "__fish_titan_supervisor_using_subcommand help; and not __fish_seen_subcommand_from run validate graph status start stop restart reload events upgrade logs demo switch rollback releases release import-compose import-pm2 man completions help" -f -a "status" -d 'Show every service of the running daemon: state, pid, uptime, restarts, memory, health'
complete -c titan-supervisor -n "__fish_titan_supervisor_using_subcommand help; and not __fish_seen_subcommand_from run validate graph status start stop restart reload events upgrade logs demo switch rollback releases release import-compose import-pm2 man completions help" -f -a "start" -d 'Start a service (held stopped, failed or exited) and wait until it is healthy'
complete -c titan-supervisor -n "__fish_titan_supervisor_using_subcommand help; and not __fish_seen_subcommand_from run validate graph status start stop restart reload events upgrade logs demo switch rollback releases release import-compose import-pm2 man completions help" -f -a "stop" -d 'Stop a service and hold it stopped until `start`'
complete -c titan-supervisor -n "__fish_titan_supervisor_using_subcommand help; and not __fish_seen_subcommand_from run validate graph status start stop restart reload events upgrade logs demo switch rollback releases release import-compose import-pm2 man completions help" -f -a "restart" -d 'Restart a service through its health gate and report the outcome'
complete -c titan-supervisor -n "__fish_titan_supervisor_using_subcommand help; and not __fish_seen_subcommand_from run validate graph status start stop restart reload events upgrade logs demo switch rollback releases release import-compose import-pm2 man completions help" -f -a "reload" -d 'Re-read the config and apply only the difference (also SIGHUP to the daemon)'
complete -c titan-supervisor -n "__fish_titan_supervisor_using_subcommand help; and not __fish_seen_subcommand_from run validate graph status start stop restart reload events upgrade logs demo switch rollback releases release import-compose import-pm2 man completions help" -f -a "events" -d 'Follow lifecycle events as JSON lines (one per state change) until interrupted'
complete -c titan-supervisor -n "__fish_titan_supervisor_using_subcommand help; and not __fish_seen_subcommand_from run validate graph status start stop restart reload events upgrade logs demo switch rollback releases release import-compose import-pm2 man completions help" -f -a "upgrade" -d 'Re-execute the daemon\'s binary (a new version in its place) without stopping containers: native services are stopped in order, containers are adopted by the new process. Also SIGUSR2 to the daemon'
complete -c titan-supervisor -n "__fish_titan_supervisor_using_subcommand help; and not __fish_seen_subcommand_from run validate graph status start stop restart reload events upgrade logs demo switch rollback releases release import-compose import-pm2 man completions help" -f -a "logs" -d 'Print a service\'s log (`supervisor` for the supervisor\'s own), from the log files'
complete -c titan-supervisor -n "__fish_titan_supervisor_using_subcommand help; and not __fish_seen_subcommand_from run validate graph status start stop restart reload events upgrade logs demo switch rollback releases release import-compose import-pm2 man completions help" -f -a "demo" -d 'The built-in six-tier demo on native processes'
complete -c titan-supervisor -n "__fish_titan_supervisor_using_subcommand help; and not __fish_seen_subcommand_from run validate graph status start stop restart reload events upgrade logs demo switch rollback releases release import-compose import-pm2 man completions help" -f -a "switch" -d 'Deploy a release: validate, pull, swap `current`, recreate what changed, verify; roll back to the last known good release by itself when anything fails'
complete -c titan-supervisor -n "__fish_titan_supervisor_using_subcommand help; and not __fish_seen_subcommand_from run validate graph status start stop restart reload events upgrade logs demo switch rollback releases release import-compose import-pm2 man completions help" -f -a "rollback" -d 'Switch back to a release (default: the last known good) through the same pipeline'
complete -c titan-supervisor -n "__fish_titan_supervisor_using_subcommand help; and not __fish_seen_subcommand_from run validate graph status start stop restart reload events upgrade logs demo switch rollback releases release import-compose import-pm2 man completions help" -f -a "releases" -d 'List the releases: current, last known good, bad marks, last outcome'
complete -c titan-supervisor -n "__fish_titan_supervisor_using_subcommand help; and not __fish_seen_subcommand_from run validate graph status start stop restart reload events upgrade logs demo switch rollback releases release import-compose import-pm2 man completions help" -f -a "release" -d 'Make releases'
complete -c titan-supervisor -n "__fish_titan_supervisor_using_subcommand help; and not __fish_seen_subcommand_from run validate graph status start stop restart reload events upgrade logs demo switch rollback releases release import-compose import-pm2 man completions help" -f -a "import-compose" -d 'Convert a docker compose file to a services.toml on stdout; what has no services.toml form is a warning on stderr naming the service and key'
complete -c titan-supervisor -n "__fish_titan_supervisor_using_subcommand help; and not __fish_seen_subcommand_from run validate graph status start stop restart reload events upgrade logs demo switch rollback releases release import-compose import-pm2 man completions help" -f -a "import-pm2" -d 'Convert a PM2 ecosystem file (JSON, or plain-data ecosystem.config.js) to a services.toml on stdout; what has no services.toml form is a warning on stderr naming the app and key'
complete -c titan-supervisor -n "__fish_titan_supervisor_using_subcommand help; and not __fish_seen_subcommand_from run validate graph status start stop restart reload events upgrade logs demo switch rollback releases release import-compose import-pm2 man completions help" -f -a "man" -d 'Print the man page, titan-supervisor(1), on stdout: one page with every command and its options (`man > /usr/local/share/man/man1/titan-supervisor.1`)'
complete -c titan-supervisor -n "__fish_titan_supervisor_using_subcommand help; and not __fish_seen_subcommand_from run validate graph status start stop restart reload events upgrade logs demo switch rollback releases release import-compose import-pm2 man completions help" -f -a "completions" -d 'Print the completion script for SHELL on stdout (bash, zsh, fish, elvish, powershell)'
complete -c titan-supervisor -n "__fish_titan_supervisor_using_subcommand help; and not __fish_seen_subcommand_from run validate graph status start stop restart reload events upgrade logs demo switch rollback releases release import-compose import-pm2 man completions help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c titan-supervisor -n "__fish_titan_supervisor_using_subcommand help; and __fish_seen_subcommand_from release" -f -a "create" -d 'Write a release directory: services.toml pinned from digests.json, digests.json, release.json, and with --sign a minisign signature of digests.json. Prints its path'
