package main

// Running Python policy packs (`pulumi preview --policy-pack DIR`) for the CLI.
//
// Since v3.2xx the CLI no longer starts a policy pack through a `pulumi-analyzer-policy-python`
// script when a language host exists: it calls this host's RunPlugin with Kind "analyzer", the pack
// directory in ProgramInfo (runtime options from PulumiPolicy.yaml), the engine address in Args and
// the environment it wants the pack to have in Env. It then expects, on the RunPlugin stream, what a
// plugin process would print: the port of an Analyzer gRPC server on the first stdout line, the
// rest of stdout/stderr, and finally the exit code.
//
// The Python side (`python -m pulumi.policy ENGINE PACK_DIR`, from the pulumi SDK, running the
// pack's __main__.py with pulumi_policy) learns the stack it checks only from environment variables
// (PULUMI_PROJECT, PULUMI_STACK, PULUMI_DRY_RUN, PULUMI_CONFIG...), while the engine sends that
// information over gRPC (Analyzer.ConfigureStack) once it is connected. The sdk's PolicyProxy
// bridges the two: it serves the Analyzer API first, takes the stack configuration, and once we have
// started Python with the matching environment it forwards every other call to the real pack.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"

	sdk "github.com/pulumi/pulumi/sdk/v3"
	"github.com/pulumi/pulumi/sdk/v3/go/common/apitype"
	"github.com/pulumi/pulumi/sdk/v3/go/common/util/logging"
	"github.com/pulumi/pulumi/sdk/v3/go/common/util/rpcutil"
	pulumirpc "github.com/pulumi/pulumi/sdk/v3/proto/go"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// policyPackModule is the pulumi SDK module that boots a Python policy pack.
const policyPackModule = "pulumi.policy"

// RunPlugin runs a plugin written in Python. Only policy packs are supported: this project has no
// Python resource provider plugin (dynamic providers go through pulumi-resource-pulumi-python, which
// the engine starts itself), so any other kind is refused plainly.
func (h *host) RunPlugin(req *pulumirpc.RunPluginRequest,
	server grpc.ServerStreamingServer[pulumirpc.RunPluginResponse],
) error {
	logging.V(3).Infof("python language host: RunPlugin(name=%s, kind=%s, dir=%s)",
		req.GetName(), req.GetKind(), req.GetInfo().GetProgramDirectory())
	if req.GetKind() != string(apitype.AnalyzerPlugin) {
		return status.Errorf(codes.Unimplemented,
			"running Python plugins of kind %q (%s) is not supported by this project's Python language host: "+
				"only policy packs (kind %q) are", req.GetKind(), req.GetName(), apitype.AnalyzerPlugin)
	}
	if req.GetAttachDebugger() {
		return status.Errorf(codes.Unimplemented,
			"attaching a debugger to a policy pack is not supported by this project's Python language host")
	}
	return h.runPolicyPack(req, &serialisedStream{ServerStreamingServer: server})
}

// serialisedStream lets several goroutines write to one RunPlugin stream: the pack's stdout (copied
// by the policy proxy) and its stderr (copied by os/exec) arrive concurrently, and gRPC forbids
// concurrent Send calls on a stream.
type serialisedStream struct {
	grpc.ServerStreamingServer[pulumirpc.RunPluginResponse]
	mu sync.Mutex
}

func (s *serialisedStream) Send(msg *pulumirpc.RunPluginResponse) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ServerStreamingServer.Send(msg)
}

// policyPackCommandArgs is the interpreter's command line: unbuffered (so the pack's port and log
// lines reach the CLI at once), the SDK's boot module, the CLI's arguments (the engine address),
// then the pack directory, which pulumi.policy expects last.
func policyPackCommandArgs(cliArgs []string, packDir string) []string {
	args := make([]string, 0, len(cliArgs)+4)
	args = append(args, "-u", "-m", policyPackModule)
	args = append(args, cliArgs...)
	return append(args, packDir)
}

// policyPackStackEnv turns the stack configuration the engine sent (nil when it sent none, e.g.
// `pulumi policy publish`) into the variables pulumi.policy and pulumi_policy read. PULUMI_CONFIG
// holds decrypted secrets, exactly as for a program run: it goes to the pack's environment only,
// never to a log.
func policyPackStackEnv(cfg *pulumirpc.AnalyzerStackConfigureRequest) ([]string, error) {
	if cfg == nil {
		return nil, nil
	}
	var env []string
	set := func(key, value string) {
		if value != "" {
			env = append(env, key+"="+value)
		}
	}
	set("PULUMI_ORGANIZATION", cfg.GetOrganization())
	set("PULUMI_PROJECT", cfg.GetProject())
	set("PULUMI_STACK", cfg.GetStack())
	set("PULUMI_DRY_RUN", strconv.FormatBool(cfg.GetDryRun()))

	config := cfg.GetConfig()
	if config == nil {
		config = map[string]string{}
	}
	data, err := json.Marshal(config)
	if err != nil {
		return nil, fmt.Errorf("cannot serialise the stack configuration: %w", err)
	}
	set("PULUMI_CONFIG", string(data))

	secretKeys := cfg.GetConfigSecretKeys()
	if secretKeys == nil {
		secretKeys = []string{}
	}
	data, err = json.Marshal(secretKeys)
	if err != nil {
		return nil, fmt.Errorf("cannot serialise the secret configuration keys: %w", err)
	}
	set("PULUMI_CONFIG_SECRET_KEYS", string(data))
	return env, nil
}

// checkPolicyPackDir verifies the pack can be run the way pulumi.policy runs it (its __main__.py).
func checkPolicyPackDir(packDir string) error {
	if packDir == "" {
		return errors.New("the CLI sent no policy pack directory")
	}
	mainPy := filepath.Join(packDir, "__main__.py")
	info, err := os.Stat(mainPy)
	if err != nil {
		return fmt.Errorf("policy pack %s has no __main__.py (the file that declares its PolicyPack): %w",
			packDir, err)
	}
	if info.IsDir() {
		return fmt.Errorf("policy pack %s: __main__.py is a directory", packDir)
	}
	return nil
}

// runPolicyPack starts the pack behind the sdk's policy proxy and reports its output and exit code on
// the stream. It returns when the pack exits or when the CLI ends the request (it kills the pack
// when the operation is over).
func (h *host) runPolicyPack(req *pulumirpc.RunPluginRequest,
	server grpc.ServerStreamingServer[pulumirpc.RunPluginResponse],
) error {
	info := req.GetInfo()
	packDir := info.GetProgramDirectory()
	if err := checkPolicyPackDir(packDir); err != nil {
		return status.Error(codes.FailedPrecondition, err.Error())
	}
	py, err := resolvePython(info, policyProjectFile)
	if err != nil {
		return status.Error(codes.FailedPrecondition, err.Error())
	}
	if err := py.check(); err != nil {
		return status.Error(codes.FailedPrecondition, err.Error())
	}

	// The pack lives as long as the request, or until the CLI sends Cancel.
	runCtx, cancelRun := context.WithCancel(h.cancelCtx)
	defer cancelRun()
	stopWatching := context.AfterFunc(server.Context(), cancelRun)
	defer stopWatching()

	closer, stdout, stderr, err := rpcutil.MakeRunPluginStreams(server, false)
	if err != nil {
		return fmt.Errorf("cannot set up the policy pack's output streams: %w", err)
	}
	defer closer.Close()

	// The proxy prints its own port on the stream's stdout: the CLI connects to it as if it were the
	// pack, and sends the stack configuration. packStdout is what the pack must write to: the proxy
	// reads the pack's port from it and passes the rest on to the CLI.
	proxy, packStdout, err := sdk.NewPolicyProxy(runCtx, stdout)
	if err != nil {
		return fmt.Errorf("cannot start the policy pack proxy: %w", err)
	}
	stackConfig, err := proxy.AwaitConfiguration(runCtx)
	if err != nil {
		return h.endedEarly(server.Context(), fmt.Errorf("no stack configuration from the CLI: %w", err))
	}
	stackEnv, err := policyPackStackEnv(stackConfig)
	if err != nil {
		return err
	}

	args := policyPackCommandArgs(req.GetArgs(), packDir)
	cmd := exec.CommandContext(runCtx, py.python, args...)
	// Our environment, then the one the CLI chose for the pack (its own, plus per-pack variables),
	// then the virtualenv activation and the stack the pack checks, which must not be overridden.
	base := append(os.Environ(), req.GetEnv()...)
	cmd.Env = py.environFrom(base, stackEnv...)
	// Policy packs have always run from their own directory (relative imports, data files).
	cmd.Dir = packDir
	cmd.Stdout = packStdout
	cmd.Stderr = stderr
	// The CLI ends the request when it no longer needs the pack; a checker has nothing to save, so it
	// is killed at once (the CommandContext default), with a bound on waiting for its output.
	cmd.WaitDelay = interruptGrace
	logging.V(5).Infof("python language host: launching policy pack: %s %s (in %s)",
		py.python, strings.Join(args, " "), packDir)

	if err := cmd.Start(); err != nil {
		return fmt.Errorf("cannot start the policy pack with %s: %w", py.python, err)
	}
	// Attach waits for the pack's port, connects the proxy to it, forwards the stack configuration,
	// then returns when the pack exits.
	attachErr := proxy.Attach(runCtx, cmd)
	if attachErr == nil {
		return sendExitCode(server, 0, closer)
	}
	var exitErr *exec.ExitError
	if errors.As(attachErr, &exitErr) {
		if ws, ok := exitErr.Sys().(syscall.WaitStatus); ok && ws.Exited() {
			return sendExitCode(server, int32(ws.ExitStatus()), closer)
		}
	}
	return h.endedEarly(server.Context(),
		fmt.Errorf("policy pack %s did not run to completion (its own output, if any, is shown above): %w",
			packDir, attachErr))
}

// sendExitCode flushes the output streams and sends the pack's exit code, the stream's last message.
func sendExitCode(server grpc.ServerStreamingServer[pulumirpc.RunPluginResponse], code int32,
	closer interface{ Close() error },
) error {
	if err := closer.Close(); err != nil {
		return fmt.Errorf("cannot flush the policy pack's output: %w", err)
	}
	logging.V(5).Infof("python language host: policy pack exited with code %d", code)
	return server.Send(&pulumirpc.RunPluginResponse{Output: &pulumirpc.RunPluginResponse_Exitcode{Exitcode: code}})
}

// endedEarly reports a pack that stopped without an exit code of its own. When the CLI itself ended
// the request (the normal end of an operation) or sent Cancel, that is not an error worth showing.
func (h *host) endedEarly(requestCtx context.Context, err error) error {
	if requestCtx.Err() != nil {
		return status.FromContextError(requestCtx.Err()).Err()
	}
	if h.cancelCtx.Err() != nil {
		return status.Error(codes.Canceled, "policy pack interrupted: the CLI cancelled the operation")
	}
	return err
}
