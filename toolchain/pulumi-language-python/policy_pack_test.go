package main

// Tests of RunPlugin for policy packs. The end-to-end ones play the CLI's part against a real
// gRPC server of this host and a real Python policy pack run by the project's virtualenv
// (<repo>/.venv, or $VISIO_VENV), which holds pulumi and pulumi-policy (scripts/setup.sh).

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pulumi/pulumi/sdk/v3/go/common/util/rpcutil"
	pulumirpc "github.com/pulumi/pulumi/sdk/v3/proto/go"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/structpb"
)

// lastValue returns the value os/exec would use for key (the last entry wins), and whether it is set.
func lastValue(env []string, key string) (string, bool) {
	value, found := "", false
	for _, kv := range env {
		if k, v, ok := strings.Cut(kv, "="); ok && k == key {
			value, found = v, true
		}
	}
	return value, found
}

func TestPolicyPackCommandArgsPutThePackDirectoryLast(t *testing.T) {
	got := policyPackCommandArgs([]string{"127.0.0.1:4242", "--logtostderr"}, "/srv/pack")
	want := []string{"-u", "-m", "pulumi.policy", "127.0.0.1:4242", "--logtostderr", "/srv/pack"}
	if !slices.Equal(got, want) {
		t.Fatalf("args = %q, want %q", got, want)
	}
}

func TestPolicyPackStackEnvCarriesIdentityConfigAndSecretKeys(t *testing.T) {
	env, err := policyPackStackEnv(&pulumirpc.AnalyzerStackConfigureRequest{
		Organization:     "ministere-x",
		Project:          "visio",
		Stack:            "lab",
		DryRun:           true,
		Config:           map[string]string{"visio:ministry": `{"slug":"lab"}`, "visio:token": "s3cr3t"},
		ConfigSecretKeys: []string{"visio:token"},
	})
	if err != nil {
		t.Fatal(err)
	}
	for key, want := range map[string]string{
		"PULUMI_ORGANIZATION": "ministere-x",
		"PULUMI_PROJECT":      "visio",
		"PULUMI_STACK":        "lab",
		"PULUMI_DRY_RUN":      "true",
	} {
		if got, _ := lastValue(env, key); got != want {
			t.Errorf("%s = %q, want %q", key, got, want)
		}
	}
	raw, _ := lastValue(env, "PULUMI_CONFIG")
	var config map[string]string
	if err := json.Unmarshal([]byte(raw), &config); err != nil {
		t.Fatalf("PULUMI_CONFIG is not a JSON object: %q (%v)", raw, err)
	}
	if config["visio:ministry"] != `{"slug":"lab"}` || config["visio:token"] != "s3cr3t" {
		t.Errorf("PULUMI_CONFIG = %v", config)
	}
	if got, _ := lastValue(env, "PULUMI_CONFIG_SECRET_KEYS"); got != `["visio:token"]` {
		t.Errorf("PULUMI_CONFIG_SECRET_KEYS = %q", got)
	}
}

func TestPolicyPackStackEnvWithoutConfigurationOrOrganization(t *testing.T) {
	env, err := policyPackStackEnv(nil)
	if err != nil || env != nil {
		t.Fatalf("no configuration must give no variables, got %q, %v", env, err)
	}
	env, err = policyPackStackEnv(&pulumirpc.AnalyzerStackConfigureRequest{Project: "p", Stack: "s"})
	if err != nil {
		t.Fatal(err)
	}
	if _, set := lastValue(env, "PULUMI_ORGANIZATION"); set {
		t.Errorf("an empty organization (file backend) must stay unset, env = %q", env)
	}
	if got, _ := lastValue(env, "PULUMI_DRY_RUN"); got != "false" {
		t.Errorf("PULUMI_DRY_RUN = %q, want false", got)
	}
	if got, _ := lastValue(env, "PULUMI_CONFIG"); got != "{}" {
		t.Errorf("PULUMI_CONFIG = %q, want {}", got)
	}
	if got, _ := lastValue(env, "PULUMI_CONFIG_SECRET_KEYS"); got != "[]" {
		t.Errorf("PULUMI_CONFIG_SECRET_KEYS = %q, want []", got)
	}
}

func TestEnvironFromKeepsTheVirtualenvFirstOverTheCLIEnvironment(t *testing.T) {
	py := &pythonEnv{virtualenv: "/work/venv", python: "/work/venv/bin/python"}
	base := []string{"PATH=/usr/bin", "VIRTUAL_ENV=/elsewhere", "PYTHONHOME=/opt/py", "HOME=/root",
		// what the CLI asks for comes after our own environment
		"PATH=/cli/bin:/usr/bin", "VIRTUAL_ENV=/cli/venv", "HOME=/home/cli"}
	env := py.environFrom(base, "PULUMI_STACK=lab")
	checks := map[string]string{
		"PATH":         "/work/venv/bin:/cli/bin:/usr/bin",
		"VIRTUAL_ENV":  "/work/venv",
		"HOME":         "/home/cli",
		"PULUMI_STACK": "lab",
	}
	for key, want := range checks {
		if got, _ := lastValue(env, key); got != want {
			t.Errorf("%s = %q, want %q (env %q)", key, got, want, env)
		}
	}
	if _, set := lastValue(env, "PYTHONHOME"); set {
		t.Errorf("PYTHONHOME must be dropped for a virtualenv, env = %q", env)
	}
}

// ---------------------------------------------------------------------------------------------
// Through the gRPC API
// ---------------------------------------------------------------------------------------------

// startHost serves a host on a free port and returns a client for it.
func startHost(t *testing.T) (*host, pulumirpc.LanguageRuntimeClient) {
	t.Helper()
	stopCtx, stop := context.WithCancel(context.Background())
	h := newHost("/nonexistent/"+shimName, "", stopCtx, stop)
	cancelServer := make(chan bool)
	handle, err := rpcutil.ServeWithOptions(rpcutil.ServeOptions{
		Cancel: cancelServer,
		Init: func(srv *grpc.Server) error {
			pulumirpc.RegisterLanguageRuntimeServer(srv, h)
			return nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(fmt.Sprintf("127.0.0.1:%d", handle.Port),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		conn.Close()
		close(cancelServer)
		<-handle.Done
		stop()
	})
	return h, pulumirpc.NewLanguageRuntimeClient(conn)
}

func packRequest(t *testing.T, packDir, virtualenv string) *pulumirpc.RunPluginRequest {
	t.Helper()
	options, err := structpb.NewStruct(map[string]any{"virtualenv": virtualenv})
	if err != nil {
		t.Fatal(err)
	}
	return &pulumirpc.RunPluginRequest{
		Name: "test-pack",
		Kind: "analyzer",
		// pulumi.policy takes the engine address but the pack never dials it unprompted.
		Args: []string{"127.0.0.1:1"},
		Env:  []string{"VISIO_FROM_CLI=per-pack-variable"},
		Info: &pulumirpc.ProgramInfo{
			RootDirectory:    packDir,
			ProgramDirectory: packDir,
			EntryPoint:       ".",
			Options:          options,
		},
	}
}

// firstError receives from a RunPlugin stream until it fails, and returns that error.
func firstError(stream grpc.ServerStreamingClient[pulumirpc.RunPluginResponse]) error {
	for {
		if _, err := stream.Recv(); err != nil {
			return err
		}
	}
}

func TestRunPluginRefusesOtherKindsPlainly(t *testing.T) {
	_, client := startHost(t)
	stream, err := client.RunPlugin(context.Background(), &pulumirpc.RunPluginRequest{
		Name: "some-provider", Kind: "resource", Info: &pulumirpc.ProgramInfo{ProgramDirectory: t.TempDir()},
	})
	if err != nil {
		t.Fatal(err)
	}
	err = firstError(stream)
	if status.Code(err) != codes.Unimplemented || !strings.Contains(err.Error(), `kind "resource"`) {
		t.Fatalf("want Unimplemented naming the kind, got %v", err)
	}
}

func TestRunPluginExplainsAMissingPackOrVirtualenv(t *testing.T) {
	_, client := startHost(t)

	empty := t.TempDir()
	stream, err := client.RunPlugin(context.Background(), packRequest(t, empty, "venv"))
	if err != nil {
		t.Fatal(err)
	}
	err = firstError(stream)
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "no __main__.py") {
		t.Fatalf("pack without __main__.py: got %v", err)
	}

	pack := t.TempDir()
	if err := os.WriteFile(filepath.Join(pack, "__main__.py"), []byte("raise SystemExit(0)\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	stream, err = client.RunPlugin(context.Background(), packRequest(t, pack, "../no-such-venv"))
	if err != nil {
		t.Fatal(err)
	}
	err = firstError(stream)
	if status.Code(err) != codes.FailedPrecondition ||
		!strings.Contains(err.Error(), "PulumiPolicy.yaml") || !strings.Contains(err.Error(), "doesn't exist") {
		t.Fatalf("pack with a missing virtualenv: got %v", err)
	}
}

// projectVirtualenv is the virtualenv holding pulumi and pulumi-policy.
func projectVirtualenv(t *testing.T) string {
	t.Helper()
	venv := os.Getenv("VISIO_VENV")
	if venv == "" {
		abs, err := filepath.Abs(filepath.Join("..", "..", ".venv"))
		if err != nil {
			t.Fatal(err)
		}
		venv = abs
	}
	if _, err := os.Stat(filepath.Join(venv, "bin", "python")); err != nil {
		t.Fatalf("these tests run a real policy pack and need the project's virtualenv with pulumi-policy "+
			"(scripts/setup.sh creates it; or set VISIO_VENV): %v", err)
	}
	return venv
}

// recorder collects what the host streams back, as the CLI does.
type recorder struct {
	mu       sync.Mutex
	stdout   bytes.Buffer
	stderr   bytes.Buffer
	exitCode *int32
	err      error
	done     chan struct{}
}

func record(stream grpc.ServerStreamingClient[pulumirpc.RunPluginResponse]) *recorder {
	r := &recorder{done: make(chan struct{})}
	go func() {
		defer close(r.done)
		for {
			msg, err := stream.Recv()
			r.mu.Lock()
			if err != nil {
				if !errors.Is(err, io.EOF) {
					r.err = err
				}
				r.mu.Unlock()
				return
			}
			switch out := msg.GetOutput().(type) {
			case *pulumirpc.RunPluginResponse_Stdout:
				r.stdout.Write(out.Stdout)
			case *pulumirpc.RunPluginResponse_Stderr:
				r.stderr.Write(out.Stderr)
			case *pulumirpc.RunPluginResponse_Exitcode:
				code := out.Exitcode
				r.exitCode = &code
			}
			r.mu.Unlock()
		}
	}()
	return r
}

// port waits for the first stdout line (the port the CLI must connect to).
func (r *recorder) port(t *testing.T) int {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		r.mu.Lock()
		line, _, complete := strings.Cut(r.stdout.String(), "\n")
		failed := r.err
		r.mu.Unlock()
		if complete {
			port, err := strconv.Atoi(strings.TrimSpace(line))
			if err != nil {
				t.Fatalf("first stdout line is not a port: %q", line)
			}
			return port
		}
		if failed != nil {
			t.Fatalf("RunPlugin failed before announcing a port: %v", failed)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal("no port announced within 30s")
	return 0
}

func (r *recorder) wait(t *testing.T) {
	t.Helper()
	select {
	case <-r.done:
	case <-time.After(30 * time.Second):
		t.Fatal("the RunPlugin stream did not end within 30s")
	}
}

func writePack(t *testing.T, mainPy string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "__main__.py"), []byte(mainPy), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// echoPack flags every resource of type test:index:Bad, and tells in the message what it saw of
// the stack (environment, configuration, working directory) so the test can check the wiring.
const echoPack = `import os
import sys

import pulumi
from pulumi_policy import EnforcementLevel, PolicyPack, ResourceValidationPolicy


def check(args, report_violation):
    print("checking", args.urn, flush=True)
    if args.resource_type != "test:index:Bad":
        return
    seen = {
        "stack": pulumi.get_stack(),
        "project": pulumi.get_project(),
        "dry_run": os.environ.get("PULUMI_DRY_RUN"),
        "marker": pulumi.Config("testproj").get("marker"),
        "secret_keys": os.environ.get("PULUMI_CONFIG_SECRET_KEYS"),
        "cwd": os.getcwd(),
        "from_cli": os.environ.get("VISIO_FROM_CLI"),
        "virtual_env": os.environ.get("VIRTUAL_ENV"),
    }
    import json
    report_violation("SEEN " + json.dumps(seen, sort_keys=True))


# stderr is free at any time; stdout only after the pack has printed its port (the proxy reads it).
sys.stderr.write("pack starting\n")
PolicyPack("echo-pack", policies=[
    ResourceValidationPolicy("no-bad", "No resource of type test:index:Bad.", check,
                             enforcement_level=EnforcementLevel.MANDATORY),
])
`

func TestRunPluginRunsAPolicyPackWithTheStackItChecks(t *testing.T) {
	venv := projectVirtualenv(t)
	_, client := startHost(t)
	pack := writePack(t, echoPack)

	ctx, endRequest := context.WithCancel(context.Background())
	defer endRequest()
	stream, err := client.RunPlugin(ctx, packRequest(t, pack, venv))
	if err != nil {
		t.Fatal(err)
	}
	out := record(stream)

	conn, err := grpc.NewClient(fmt.Sprintf("127.0.0.1:%d", out.port(t)),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	analyzer := pulumirpc.NewAnalyzerClient(conn)
	callCtx, cancelCalls := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancelCalls()

	// The CLI's sequence: handshake, stack configuration, then the analyzer's own API.
	if _, err := analyzer.Handshake(callCtx, &pulumirpc.AnalyzerHandshakeRequest{}); err != nil {
		t.Fatalf("Handshake: %v", err)
	}
	if _, err := analyzer.ConfigureStack(callCtx, &pulumirpc.AnalyzerStackConfigureRequest{
		Project:          "testproj",
		Stack:            "teststack",
		DryRun:           true,
		Config:           map[string]string{"testproj:marker": "from-stack-config", "testproj:token": "s3cr3t"},
		ConfigSecretKeys: []string{"testproj:token"},
	}); err != nil {
		t.Fatalf("ConfigureStack: %v", err)
	}
	info, err := analyzer.GetAnalyzerInfo(callCtx, &emptypb.Empty{})
	if err != nil {
		t.Fatalf("GetAnalyzerInfo: %v (stderr: %s)", err, out.stderr.String())
	}
	if info.GetName() != "echo-pack" || len(info.GetPolicies()) != 1 {
		t.Fatalf("analyzer info = %v", info)
	}

	good, err := analyzer.Analyze(callCtx, &pulumirpc.AnalyzeRequest{
		Urn: "urn:pulumi:teststack::testproj::test:index:Good::ok", Type: "test:index:Good", Name: "ok",
	})
	if err != nil {
		t.Fatalf("Analyze(good): %v", err)
	}
	if len(good.GetDiagnostics()) != 0 {
		t.Fatalf("a compliant resource got diagnostics: %v", good.GetDiagnostics())
	}
	bad, err := analyzer.Analyze(callCtx, &pulumirpc.AnalyzeRequest{
		Urn: "urn:pulumi:teststack::testproj::test:index:Bad::nope", Type: "test:index:Bad", Name: "nope",
	})
	if err != nil {
		t.Fatalf("Analyze(bad): %v", err)
	}
	diags := bad.GetDiagnostics()
	if len(diags) != 1 || diags[0].GetPolicyName() != "no-bad" ||
		diags[0].GetEnforcementLevel() != pulumirpc.EnforcementLevel_MANDATORY {
		t.Fatalf("want one mandatory no-bad violation, got %v", diags)
	}
	_, seenJSON, _ := strings.Cut(diags[0].GetMessage(), "SEEN ")
	var seen map[string]string
	if err := json.Unmarshal([]byte(seenJSON), &seen); err != nil {
		t.Fatalf("violation message %q: %v", diags[0].GetMessage(), err)
	}
	packReal, _ := filepath.EvalSymlinks(pack)
	want := map[string]string{
		"stack":       "teststack",
		"project":     "testproj",
		"dry_run":     "true",
		"marker":      "from-stack-config",
		"secret_keys": `["testproj:token"]`,
		"cwd":         packReal,
		"from_cli":    "per-pack-variable",
		"virtual_env": venv,
	}
	for key, value := range want {
		if seen[key] != value {
			t.Errorf("the pack saw %s = %q, want %q", key, seen[key], value)
		}
	}

	// The pack's own output reaches the CLI: stderr, and stdout after the port line the proxy consumed.
	out.mu.Lock()
	stdout, stderr := out.stdout.String(), out.stderr.String()
	out.mu.Unlock()
	if !strings.Contains(stderr, "pack starting") {
		t.Errorf("the pack's stderr was not streamed back: %q", stderr)
	}
	if !strings.Contains(stdout, "checking urn:pulumi:teststack::testproj::test:index:Bad::nope") {
		t.Errorf("the pack's stdout was not streamed back: %q", stdout)
	}

	// The CLI ends the request when the operation is over: the pack must go, and the stream end.
	endRequest()
	out.wait(t)
	if status.Code(out.err) != codes.Canceled {
		t.Errorf("after the CLI ended the request: %v", out.err)
	}
	if _, err := analyzer.GetAnalyzerInfo(callCtx, &emptypb.Empty{}); err == nil {
		t.Error("the proxy still answers after the request ended")
	}
}

func TestRunPluginReportsTheExitCodeOfAPackThatStops(t *testing.T) {
	venv := projectVirtualenv(t)
	_, client := startHost(t)
	// A real pack that serves for a moment, then exits on its own with a distinctive code.
	pack := writePack(t, `import os, sys, threading
from pulumi_policy import PolicyPack, ResourceValidationPolicy


def give_up():
    sys.stderr.write("giving up\n")
    sys.stderr.flush()
    os._exit(7)


threading.Timer(2.0, give_up).start()
PolicyPack("short-lived", policies=[
    ResourceValidationPolicy("nothing", "Checks nothing.", lambda args, report_violation: None),
])
`)

	stream, err := client.RunPlugin(context.Background(), packRequest(t, pack, venv))
	if err != nil {
		t.Fatal(err)
	}
	out := record(stream)
	port := out.port(t)
	conn, err := grpc.NewClient(fmt.Sprintf("127.0.0.1:%d", port), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := pulumirpc.NewAnalyzerClient(conn).ConfigureStack(ctx,
		&pulumirpc.AnalyzerStackConfigureRequest{Project: "p", Stack: "s"}); err != nil {
		t.Fatal(err)
	}
	out.wait(t)
	if out.err != nil {
		t.Fatalf("stream error: %v", out.err)
	}
	if out.exitCode == nil || *out.exitCode != 7 {
		t.Fatalf("exit code = %v, want 7", out.exitCode)
	}
	if !strings.Contains(out.stderr.String(), "giving up") {
		t.Errorf("stderr not streamed: %q", out.stderr.String())
	}
}

func TestRunPluginFailsClearlyWhenThePackCannotStart(t *testing.T) {
	venv := projectVirtualenv(t)
	_, client := startHost(t)
	pack := writePack(t, "import no_such_module_in_the_venv\n")

	stream, err := client.RunPlugin(context.Background(), packRequest(t, pack, venv))
	if err != nil {
		t.Fatal(err)
	}
	out := record(stream)
	conn, err := grpc.NewClient(fmt.Sprintf("127.0.0.1:%d", out.port(t)),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	analyzer := pulumirpc.NewAnalyzerClient(conn)
	if _, err := analyzer.ConfigureStack(ctx, &pulumirpc.AnalyzerStackConfigureRequest{Project: "p", Stack: "s"}); err != nil {
		t.Fatal(err)
	}
	if _, err := analyzer.GetAnalyzerInfo(ctx, &emptypb.Empty{}); err == nil ||
		!strings.Contains(err.Error(), "policy pack not started") {
		t.Errorf("the CLI must learn the pack did not start, got %v", err)
	}
	out.wait(t)
	if out.err == nil || !strings.Contains(out.err.Error(), "did not run to completion") {
		t.Errorf("stream must end with an error, got %v (exit code %v)", out.err, out.exitCode)
	}
	if !strings.Contains(out.stderr.String(), "ModuleNotFoundError") {
		t.Errorf("the traceback must reach the CLI, stderr = %q", out.stderr.String())
	}
}
