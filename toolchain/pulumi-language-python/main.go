// Command pulumi-language-python is Visio's own, deliberately small, Pulumi language host for Python
// programs.
//
// Why it exists: the Pulumi CLI is built on these machines from the Go module proxy, and the proxy
// refuses to serve the official Python language host module. The CLI cannot run a Python program
// without a language host, so the project provides this one. It is written for this project only:
// it supports a program whose dependencies live in a virtual environment prepared by the project's
// setup script (the `virtualenv` runtime option of Pulumi.yaml), or the ambient python3.
//
// How a language host works (the contract, as the CLI of v3.260 expects it):
//
//   - The CLI starts the host as `pulumi-language-python [--logtostderr] [-v=N] [--tracing URL] ENGINE`,
//     where ENGINE is the gRPC address of the engine. The host listens on 127.0.0.1 on a port the
//     kernel picks, prints that port alone on the first line of stdout, and serves the
//     pulumirpc.LanguageRuntime service until the CLI kills it (or the engine stops answering
//     health checks, or the host gets an interrupt).
//   - Everything the host (or its children) writes to stdout/stderr afterwards is read by the CLI and
//     shown to the user as diagnostics, line by line. So the Python program's output is "streamed to
//     the engine" simply by sharing our stdout/stderr with the child process.
//   - To run the program (RPC Run), the host starts python on the shim script
//     `pulumi-language-python-exec`, which ships with the Python SDK and must sit beside this
//     executable. The shim connects the program to the resource monitor and the engine.
//     Exit code 32 from the shim means "an error was already shown to the user": the host then
//     answers Run with bail=true so the CLI does not print a second, redundant error.
//
// Policy packs written in Python (`pulumi preview --policy-pack DIR`) are started by RunPlugin, see
// policy_pack.go.
//
// Python dynamic providers are not started by this host: the engine itself launches the script
// `pulumi-resource-pulumi-python` (found on PATH or beside the pulumi binary), and it passes every
// runtime option of Pulumi.yaml to that plugin as PULUMI_RUNTIME_<OPTION> environment variables, so
// PULUMI_RUNTIME_VIRTUALENV reaches the launcher without any help from us.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/pulumi/pulumi/sdk/v3/go/common/util/logging"
	"github.com/pulumi/pulumi/sdk/v3/go/common/util/rpcutil"
	pulumirpc "github.com/pulumi/pulumi/sdk/v3/proto/go"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/emptypb"
)

// version is reported by GetPluginInfo and --version. It matches the CLI and SDK release the
// project pins; the build may override it with -ldflags "-X main.version=X.Y.Z".
var version = "3.260.0"

const (
	// Name of the Python shim that actually runs the program; it must be installed next to us.
	shimName = "pulumi-language-python-exec"

	// Exit code by which the shim says it has already reported the failure to the user.
	exitCodeErrorAlreadyShown = 32

	// How often the engine is pinged; when it stops answering, the host shuts down.
	engineHealthInterval = 5 * time.Minute

	// How long a cancelled program gets between SIGTERM and SIGKILL.
	interruptGrace = 5 * time.Second
)

func main() {
	tracingEndpoint := flag.String("tracing", "", "Zipkin-compatible tracing endpoint, handed on to the program")
	showVersion := flag.Bool("version", false, "print the plugin version and exit")
	executorFlag := flag.String("use-executor", "",
		"path of the Python shim to run instead of the "+shimName+" beside this executable (tests)")
	// The flags -v and -logtostderr, which the CLI adds with --logflow, are registered by the
	// sdk's logging package (through glog); logging.InitLogging reads them.
	flag.Parse()

	if *showVersion {
		fmt.Println(version)
		return
	}
	logging.InitLogging(false, 0, false)

	shim, err := locateShim(*executorFlag)
	if err != nil {
		fatal(err)
	}
	logging.V(3).Infof("python language host: using shim %s", shim)

	// The only positional argument is the engine's address. Without it (e.g. a debugger attaching
	// to a host started by hand) the CLI sends it later in Handshake.
	var engineAddress string
	if flag.NArg() > 0 {
		engineAddress = flag.Arg(0)
	}

	// Stop serving on an interrupt, or when the engine disappears (health check fails).
	stopCtx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()

	host := newHost(shim, *tracingEndpoint, stopCtx, stop)
	if engineAddress != "" {
		if err := host.watchEngine(engineAddress); err != nil {
			fatal(fmt.Errorf("cannot watch the engine's health at %s: %w", engineAddress, err))
		}
	}

	// rpcutil.ServeWithOptions wants a channel that is closed (or sent true) to stop the server.
	stopServer := make(chan bool)
	go func() {
		<-stopCtx.Done()
		close(stopServer)
	}()

	handle, err := rpcutil.ServeWithOptions(rpcutil.ServeOptions{
		Cancel: stopServer,
		Init: func(srv *grpc.Server) error {
			pulumirpc.RegisterLanguageRuntimeServer(srv, host)
			return nil
		},
	})
	if err != nil {
		fatal(fmt.Errorf("cannot start the language host's gRPC server: %w", err))
	}

	// The CLI reads this line to learn where to connect.
	fmt.Printf("%d\n", handle.Port)

	if err := <-handle.Done; err != nil {
		fatal(fmt.Errorf("language host stopped serving: %w", err))
	}
}

// fatal reports a start-up error the way plugins do (on stderr, which the CLI shows) and exits.
func fatal(err error) {
	fmt.Fprintf(os.Stderr, "pulumi-language-python: error: %v\n", err)
	os.Exit(1)
}

// locateShim finds the Python shim. By default it must be beside the real executable of this host
// (symbolic links resolved), the same rule the official host applies; a missing shim is a broken
// installation and we refuse to start rather than fail later with an obscure message.
func locateShim(override string) (string, error) {
	if override != "" {
		return override, nil
	}
	self, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("cannot determine the path of this executable: %w", err)
	}
	if resolved, err := filepath.EvalSymlinks(self); err == nil {
		self = resolved
	}
	shim := filepath.Join(filepath.Dir(self), shimName)
	info, err := os.Stat(shim)
	if err != nil {
		return "", fmt.Errorf("missing executor %s (the Python shim from the Pulumi SDK must be installed "+
			"next to the language host): %w", shim, err)
	}
	if info.IsDir() {
		return "", fmt.Errorf("missing executor %s: it is a directory", shim)
	}
	return shim, nil
}

// host implements pulumirpc.LanguageRuntimeServer. Methods the CLI never needs for this project
// (code generation, packing, linking) come from the embedded Unimplemented server and answer
// codes.Unimplemented; RunPlugin (policy_pack.go) runs policy packs only.
type host struct {
	pulumirpc.UnimplementedLanguageRuntimeServer

	shim    string // path of pulumi-language-python-exec
	tracing string // tracing endpoint given by the CLI, passed on to the program

	// stopCtx ends when the host must shut down; stop triggers that.
	stopCtx context.Context
	stop    context.CancelFunc

	mu            sync.Mutex
	engineAddress string // set from the command line or by Handshake

	// cancelCtx is cancelled by the Cancel RPC: running programs are interrupted.
	cancelCtx  context.Context
	cancelFunc context.CancelFunc
}

func newHost(shim, tracing string, stopCtx context.Context, stop context.CancelFunc) *host {
	cancelCtx, cancelFunc := context.WithCancel(context.Background())
	return &host{
		shim:       shim,
		tracing:    tracing,
		stopCtx:    stopCtx,
		stop:       stop,
		cancelCtx:  cancelCtx,
		cancelFunc: cancelFunc,
	}
}

// watchEngine records the engine's address and starts polling its health; if the engine stops
// answering, the host shuts down instead of lingering as an orphan.
func (h *host) watchEngine(address string) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.engineAddress == address {
		return nil
	}
	h.engineAddress = address
	return rpcutil.Healthcheck(h.stopCtx, address, engineHealthInterval, h.stop)
}

func (h *host) engine() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.engineAddress
}

// ---------------------------------------------------------------------------------------------
// Program options and the Python interpreter
// ---------------------------------------------------------------------------------------------

// pythonEnv describes the interpreter a program runs with.
type pythonEnv struct {
	projectFile      string // the file the runtime options come from, named in error messages
	virtualenvOption string // the `virtualenv` option as written in projectFile ("" when absent)
	virtualenv       string // its absolute path ("" when absent)
	python           string // interpreter to run
}

// Files whose `runtime.options` reach the host: a program's, and a policy pack's.
const (
	programProjectFile = "Pulumi.yaml"
	policyProjectFile  = "PulumiPolicy.yaml"
)

// resolvePython reads the runtime options of the project file (Pulumi.yaml, or PulumiPolicy.yaml for
// a policy pack), which the CLI passes in ProgramInfo.options (a protobuf Struct holding the
// `runtime.options` mapping), and chooses the interpreter:
//   - `virtualenv: DIR` (relative to the project root, i.e. the folder of the project file, or
//     absolute): DIR/bin/python, which must exist;
//   - otherwise $PULUMI_PYTHON_CMD, python3 or python from PATH, as the official host does.
//
// Options this small host cannot honour (another toolchain than pip, a typechecker) are refused
// with a clear message rather than silently ignored.
func resolvePython(info *pulumirpc.ProgramInfo, projectFile string) (*pythonEnv, error) {
	env := &pythonEnv{projectFile: projectFile}
	var opts map[string]any
	root := ""
	if info != nil {
		root = info.GetRootDirectory()
		if info.GetOptions() != nil {
			opts = info.GetOptions().AsMap()
		}
	}

	if raw, ok := opts["virtualenv"]; ok {
		dir, isString := raw.(string)
		if !isString {
			return nil, fmt.Errorf("the 'virtualenv' runtime option in %s must be a string", projectFile)
		}
		env.virtualenvOption = dir
	}
	if raw, ok := opts["toolchain"]; ok {
		if name, _ := raw.(string); name != "pip" {
			return nil, fmt.Errorf("the 'toolchain' runtime option %v is not supported by this project's Python "+
				"language host: only a virtualenv prepared by the project (toolchain pip) is", raw)
		}
	}
	if raw, ok := opts["typechecker"]; ok {
		return nil, fmt.Errorf("the 'typechecker' runtime option (%v) is not supported by this project's Python "+
			"language host; run the type checker from the project's test suite instead", raw)
	}

	if env.virtualenvOption != "" {
		dir := env.virtualenvOption
		if !filepath.IsAbs(dir) {
			dir = filepath.Join(root, dir)
		}
		env.virtualenv = dir
		env.python = filepath.Join(dir, "bin", "python")
		return env, nil
	}

	candidates := []string{"python3", "python"}
	if cmd := os.Getenv("PULUMI_PYTHON_CMD"); cmd != "" {
		candidates = []string{cmd}
	}
	for _, name := range candidates {
		if path, err := exec.LookPath(name); err == nil {
			env.python = path
			return env, nil
		}
	}
	return nil, fmt.Errorf("no Python interpreter found: none of %q is on PATH", candidates)
}

// check verifies that the virtual environment exists, and explains how to create it otherwise.
func (p *pythonEnv) check() error {
	if p.virtualenv == "" {
		return nil
	}
	if info, err := os.Stat(p.python); err == nil && !info.IsDir() {
		return nil
	}
	problem := "doesn't appear to be a virtual environment"
	if _, err := os.Stat(p.virtualenv); os.IsNotExist(err) {
		problem = "doesn't exist"
	}
	return fmt.Errorf("the 'virtualenv' option in %s is set to %q, but %q %s. Create it with the "+
		"project's setup script, or by hand:\n"+
		"    python3 -m venv %s\n"+
		"    %s -m pip install -r requirements.txt",
		p.projectFile, p.virtualenvOption, p.virtualenv, problem, p.virtualenv, p.python)
}

// environ returns the environment for a Python child process: ours, "activated" for the virtual
// environment when there is one (its bin first on PATH, VIRTUAL_ENV set, PYTHONHOME removed since
// it would point the venv's interpreter at another installation), plus the extra variables given.
func (p *pythonEnv) environ(extra ...string) []string {
	return p.environFrom(os.Environ(), extra...)
}

// environFrom is environ over a given base environment ("KEY=value" entries). A key may appear more
// than once (e.g. our environment followed by the one the CLI asks for): os/exec keeps the last.
func (p *pythonEnv) environFrom(base []string, extra ...string) []string {
	if p.virtualenv == "" {
		return append(base, extra...)
	}
	bin := filepath.Join(p.virtualenv, "bin")
	out := make([]string, 0, len(base)+len(extra)+2)
	sawPath := false
	// Every PATH entry gets the venv's bin first, so whichever one wins still points at it.
	for _, kv := range base {
		key, value, _ := strings.Cut(kv, "=")
		switch key {
		case "PYTHONHOME", "VIRTUAL_ENV":
			continue
		case "PATH":
			sawPath = true
			kv = "PATH=" + bin + string(os.PathListSeparator) + value
		}
		out = append(out, kv)
	}
	if !sawPath {
		out = append(out, "PATH="+bin)
	}
	out = append(out, "VIRTUAL_ENV="+p.virtualenv)
	return append(out, extra...)
}

// command prepares `python ARGS...` with the right environment.
func (p *pythonEnv) command(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, p.python, args...)
	cmd.Env = p.environ()
	return cmd
}

// ---------------------------------------------------------------------------------------------
// RPCs
// ---------------------------------------------------------------------------------------------

// Handshake is how the CLI introduces itself to a host it did not start (PULUMI_DEBUG_LANGUAGES);
// a host the CLI starts itself gets the engine address on its command line instead.
func (h *host) Handshake(ctx context.Context,
	req *pulumirpc.LanguageHandshakeRequest,
) (*pulumirpc.LanguageHandshakeResponse, error) {
	logging.V(3).Infof("python language host: Handshake(engine=%s)", req.GetEngineAddress())
	if addr := req.GetEngineAddress(); addr != "" {
		if err := h.watchEngine(addr); err != nil {
			return nil, fmt.Errorf("cannot watch the engine's health at %s: %w", addr, err)
		}
	}
	return &pulumirpc.LanguageHandshakeResponse{}, nil
}

func (h *host) GetPluginInfo(ctx context.Context, _ *emptypb.Empty) (*pulumirpc.PluginInfo, error) {
	logging.V(3).Infof("python language host: GetPluginInfo")
	return &pulumirpc.PluginInfo{Version: version}, nil
}

// GetRequiredPackages lists the plugins and packages the program needs, which the CLI would install
// before running it. This project installs its resource plugins explicitly (pinned, from its own
// builds) and dynamic providers need no plugin, so the answer is always "none".
func (h *host) GetRequiredPackages(ctx context.Context,
	req *pulumirpc.GetRequiredPackagesRequest,
) (*pulumirpc.GetRequiredPackagesResponse, error) {
	logging.V(3).Infof("python language host: GetRequiredPackages")
	return &pulumirpc.GetRequiredPackagesResponse{}, nil
}

// GetRequiredPlugins is the older form of GetRequiredPackages; same answer.
func (h *host) GetRequiredPlugins(ctx context.Context,
	req *pulumirpc.GetRequiredPluginsRequest,
) (*pulumirpc.GetRequiredPluginsResponse, error) {
	logging.V(3).Infof("python language host: GetRequiredPlugins")
	return &pulumirpc.GetRequiredPluginsResponse{}, nil
}

// Run executes the program once (preview, update, or the program run of refresh/destroy when the
// CLI asks for it) and reports how it ended.
func (h *host) Run(ctx context.Context, req *pulumirpc.RunRequest) (*pulumirpc.RunResponse, error) {
	logging.V(3).Infof("python language host: Run(project=%s, stack=%s, dryRun=%v)",
		req.GetProject(), req.GetStack(), req.GetDryRun())
	if req.GetAttachDebugger() {
		return &pulumirpc.RunResponse{
			Error: "attaching a debugger is not supported by this project's Python language host",
		}, nil
	}

	py, err := resolvePython(req.GetInfo(), programProjectFile)
	if err != nil {
		return nil, err
	}
	if err := py.check(); err != nil {
		return nil, err
	}

	// Configuration travels in the environment: PULUMI_CONFIG is a JSON object of "ns:key" to
	// value (secrets already decrypted), PULUMI_CONFIG_SECRET_KEYS a JSON array of the keys that
	// must be treated as secrets ("[]" when none).
	var extraEnv []string
	if cfg := req.GetConfig(); cfg != nil {
		data, err := json.Marshal(cfg)
		if err != nil {
			return nil, fmt.Errorf("cannot serialise the stack configuration: %w", err)
		}
		extraEnv = append(extraEnv, "PULUMI_CONFIG="+string(data))
	}
	secretKeys := req.GetConfigSecretKeys()
	if secretKeys == nil {
		secretKeys = []string{}
	}
	data, err := json.Marshal(secretKeys)
	if err != nil {
		return nil, fmt.Errorf("cannot serialise the secret configuration keys: %w", err)
	}
	extraEnv = append(extraEnv, "PULUMI_CONFIG_SECRET_KEYS="+string(data))

	// The program is interrupted when the CLI sends Cancel or abandons the request.
	runCtx, cancelRun := context.WithCancel(h.cancelCtx)
	defer cancelRun()
	stopWatching := context.AfterFunc(ctx, cancelRun)
	defer stopWatching()

	args := append([]string{h.shim}, h.shimArguments(req)...)
	cmd := exec.CommandContext(runCtx, py.python, args...)
	cmd.Env = py.environ(extraEnv...)
	// Shared stdout/stderr: the CLI reads ours and shows every line to the user.
	cmd.Stdout = os.Stdout
	cmd.Stderr = os.Stderr
	// On cancellation (the engine failed elsewhere, or the user pressed Ctrl-C), end the program with
	// SIGTERM, then SIGKILL after a grace period. Not SIGINT: Python turns that into a
	// KeyboardInterrupt whose two tracebacks would bury the engine's own error message.
	cmd.Cancel = func() error {
		if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
			return cmd.Process.Kill()
		}
		return nil
	}
	cmd.WaitDelay = interruptGrace
	logging.V(5).Infof("python language host: launching %s %s", py.python, strings.Join(args, " "))

	runErr := cmd.Run()
	if runErr == nil {
		return &pulumirpc.RunResponse{}, nil
	}

	var exitErr *exec.ExitError
	if !errors.As(runErr, &exitErr) {
		// Python could not even be started.
		return &pulumirpc.RunResponse{
			Error: fmt.Sprintf("problem executing program (could not run %s): %v", py.python, runErr),
		}, nil
	}
	ws, ok := exitErr.Sys().(syscall.WaitStatus)
	switch {
	case ok && ws.Exited() && ws.ExitStatus() == exitCodeErrorAlreadyShown:
		// The shim already printed the error (e.g. the program's traceback): just stop.
		return &pulumirpc.RunResponse{Bail: true}, nil
	case ok && ws.Exited():
		return &pulumirpc.RunResponse{
			Error: fmt.Sprintf("program exited with non-zero exit code: %d", ws.ExitStatus()),
		}, nil
	default:
		return &pulumirpc.RunResponse{Error: fmt.Sprintf("program exited unexpectedly: %v", exitErr)}, nil
	}
}

// shimArguments builds the command line of pulumi-language-python-exec: --name value pairs (empty
// values left out), then the entry point, then the program's own arguments.
func (h *host) shimArguments(req *pulumirpc.RunRequest) []string {
	var args []string
	add := func(name, value string) {
		if value != "" {
			args = append(args, "--"+name, value)
		}
	}
	add("monitor", req.GetMonitorAddress())
	add("engine", h.engine())
	add("project", req.GetProject())
	add("root_directory", req.GetInfo().GetRootDirectory())
	add("stack", req.GetStack())
	add("pwd", req.GetPwd())
	add("dry_run", strconv.FormatBool(req.GetDryRun()))
	add("parallel", strconv.Itoa(int(req.GetParallel())))
	add("tracing", h.tracing)
	add("organization", req.GetOrganization())

	// The entry point is relative to the program directory; "." means its __main__.py.
	entry := req.GetInfo().GetEntryPoint()
	if entry == "" {
		entry = req.GetProgram() // older CLIs
	}
	if entry == "" {
		entry = "."
	}
	args = append(args, entry)
	return append(args, req.GetArgs()...)
}

// InstallDependencies is what `pulumi install` (and `pulumi new`) call. Here the virtual environment
// belongs to the project's setup script, which pins and verifies every package; the host only
// reports that and checks the environment is there.
func (h *host) InstallDependencies(req *pulumirpc.InstallDependenciesRequest,
	server grpc.ServerStreamingServer[pulumirpc.InstallDependenciesResponse],
) error {
	logging.V(3).Infof("python language host: InstallDependencies")
	say := func(msg string) error {
		return server.Send(&pulumirpc.InstallDependenciesResponse{Stdout: []byte(msg)})
	}
	py, err := resolvePython(req.GetInfo(), programProjectFile)
	if err != nil {
		return err
	}
	if err := say("Python dependencies are managed by the project's setup script; " +
		"this language host installs nothing.\n"); err != nil {
		return err
	}
	if err := py.check(); err != nil {
		return err
	}
	if py.virtualenv != "" {
		return say(fmt.Sprintf("Virtual environment in use: %s\n", py.virtualenv))
	}
	return say(fmt.Sprintf("No virtualenv option in Pulumi.yaml: the program runs with %s\n", py.python))
}

// RuntimeOptionsPrompts is used by `pulumi new` to ask for runtime options; there is nothing to ask.
func (h *host) RuntimeOptionsPrompts(ctx context.Context,
	req *pulumirpc.RuntimeOptionsRequest,
) (*pulumirpc.RuntimeOptionsResponse, error) {
	logging.V(3).Infof("python language host: RuntimeOptionsPrompts")
	return &pulumirpc.RuntimeOptionsResponse{}, nil
}

// aboutScript prints, one per line: the interpreter's path, its version, and pip's version (empty
// when pip is absent).
const aboutScript = `import sys
print(sys.executable)
print("%d.%d.%d" % sys.version_info[:3])
try:
    import importlib.metadata as m
    print(m.version("pip"))
except Exception:
    print("")
`

// About describes the Python runtime for `pulumi about`.
func (h *host) About(ctx context.Context, req *pulumirpc.AboutRequest) (*pulumirpc.AboutResponse, error) {
	logging.V(3).Infof("python language host: About")
	py, err := resolvePython(req.GetInfo(), programProjectFile)
	if err != nil {
		return nil, err
	}
	if err := py.check(); err != nil {
		return nil, err
	}
	out, err := py.command(ctx, "-c", aboutScript).Output()
	if err != nil {
		return nil, fmt.Errorf("cannot query %s: %w", py.python, err)
	}
	lines := strings.Split(strings.TrimRight(string(out), "\n"), "\n")
	for len(lines) < 3 {
		lines = append(lines, "")
	}
	metadata := map[string]string{
		"toolchain":        "pip",
		"toolchainVersion": lines[2],
		"typechecker":      "none",
	}
	if py.virtualenv != "" {
		metadata["virtualenv"] = py.virtualenv
	}
	return &pulumirpc.AboutResponse{Executable: lines[0], Version: lines[1], Metadata: metadata}, nil
}

// separators collapses the characters PEP 503 treats as equivalent in package names.
var separators = regexp.MustCompile(`[-_.]+`)

// GetProgramDependencies lists the installed Python packages for `pulumi about` (all of them when
// transitive dependencies are asked for, otherwise only those no other package requires).
func (h *host) GetProgramDependencies(ctx context.Context,
	req *pulumirpc.GetProgramDependenciesRequest,
) (*pulumirpc.GetProgramDependenciesResponse, error) {
	logging.V(3).Infof("python language host: GetProgramDependencies")
	py, err := resolvePython(req.GetInfo(), programProjectFile)
	if err != nil {
		return nil, err
	}
	if err := py.check(); err != nil {
		return nil, err
	}
	args := []string{"-m", "pip", "list", "--format", "json", "--disable-pip-version-check"}
	if !req.GetTransitiveDependencies() {
		args = append(args, "--not-required")
	}
	out, err := py.command(ctx, args...).Output()
	if err != nil {
		return nil, fmt.Errorf("cannot list the Python packages with %s -m pip: %w", py.python, err)
	}
	var listed []struct {
		Name    string `json:"name"`
		Version string `json:"version"`
	}
	if err := json.Unmarshal(out, &listed); err != nil {
		return nil, fmt.Errorf("cannot read the output of pip list: %w", err)
	}
	deps := make([]*pulumirpc.DependencyInfo, 0, len(listed))
	for _, p := range listed {
		name := separators.ReplaceAllString(strings.ToLower(p.Name), "-")
		deps = append(deps, &pulumirpc.DependencyInfo{Name: name, Version: p.Version})
	}
	sort.Slice(deps, func(i, j int) bool { return deps[i].Name < deps[j].Name })
	return &pulumirpc.GetProgramDependenciesResponse{Dependencies: deps}, nil
}

// Cancel interrupts the programs running under this host (the CLI sends it on Ctrl-C).
func (h *host) Cancel(ctx context.Context, _ *emptypb.Empty) (*emptypb.Empty, error) {
	logging.V(3).Infof("python language host: Cancel")
	h.cancelFunc()
	return &emptypb.Empty{}, nil
}
