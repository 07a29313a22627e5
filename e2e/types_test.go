package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"
)

// The TypeScript declarations of the JavaScript client
// (web/static/switchboard.d.ts) are checked with the compiler pinned in
// e2e/node/package.json: the fixture in web/types-test uses every method,
// option and event, and its `@ts-expect-error` lines are wrong usage that
// must stay rejected (tsc reports a directive whose line compiles). No
// server is involved.

// TestTypeScriptDeclarations type-checks the fixture as a Node project
// without the DOM library and as a browser project.
func TestTypeScriptDeclarations(t *testing.T) {
	ctx := testContext(t, 4*time.Minute)
	nodeBin, tsc := typescriptTools(t, ctx)
	root := repoRoot(t)
	for _, project := range []string{"web/types-test/tsconfig.json", "web/types-test/tsconfig.dom.json"} {
		t.Run(filepath.Base(project), func(t *testing.T) {
			out, err := runTSC(ctx, nodeBin, tsc, root, "-p", filepath.Join(root, project))
			if err != nil || strings.Contains(out, "error TS") {
				t.Fatalf("tsc --noEmit -p %s failed (%v):\n%s", project, err, out)
			}
		})
	}
}

// TestTypeScriptRejectsWrongUsage proves the check above can fail: a
// program with wrong calls, and an expect-error directive over a line that
// compiles, must give exactly those errors.
func TestTypeScriptRejectsWrongUsage(t *testing.T) {
	ctx := testContext(t, 4*time.Minute)
	nodeBin, tsc := typescriptTools(t, ctx)
	root := repoRoot(t)
	dir := t.TempDir()
	client := filepath.ToSlash(filepath.Join(root, "web", "static", "switchboard.js"))
	// .mts: an ES module wherever the temporary directory is.
	program := strings.Join([]string{
		fmt.Sprintf("import { Switchboard } from %q;", client),
		"const sb = new Switchboard('ws://127.0.0.1:8080/ws', { user: 'alice' });",
		"void sb.join(42);",
		"sb.on('mesage', () => {});",
		"// @ts-expect-error",
		"void sb.publish('lobby', { text: 'hi' });",
		"const users: number[] = sb.usersIn('lobby');",
		"void users;",
		"",
	}, "\n")
	config := fmt.Sprintf(`{"extends": %q, "files": ["wrong.mts"]}`,
		filepath.ToSlash(filepath.Join(root, "web", "types-test", "tsconfig.json")))
	for name, text := range map[string]string{"wrong.mts": program, "tsconfig.json": config} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	out, err := runTSC(ctx, nodeBin, tsc, root, "-p", dir)
	if err == nil {
		t.Fatalf("tsc accepted the wrong program:\n%s", out)
	}
	if ctx.Err() != nil {
		t.Fatalf("tsc did not finish: %v", ctx.Err())
	}
	var got []string
	for _, m := range regexp.MustCompile(`wrong\.mts\((\d+),\d+\): error (TS\d+)`).FindAllStringSubmatch(out, -1) {
		got = append(got, m[1]+" "+m[2])
	}
	sort.Strings(got)
	want := []string{
		"3 TS2345", // a number as the room
		"4 TS2345", // an unknown event
		"5 TS2578", // an expect-error directive over a line that compiles
		"7 TS2322", // string[] taken for number[]
	}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("tsc errors (line code) %q, want %q; output:\n%s", got, want, out)
	}
}

// TestTypeScriptPackageContents checks what `npm install` of this
// repository gives: the client and its declarations, nothing of the server.
func TestTypeScriptPackageContents(t *testing.T) {
	ctx := testContext(t, 2*time.Minute)
	_, errNode := exec.LookPath("node")
	npmBin, errNpm := exec.LookPath("npm")
	if errNode != nil || errNpm != nil {
		t.Fatalf("node and npm are needed on PATH (node: %v, npm: %v); run scripts/browser-setup.sh", errNode, errNpm)
	}
	root := repoRoot(t)
	packCtx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	cmd := exec.CommandContext(packCtx, npmBin, "pack", "--dry-run", "--json", "--ignore-scripts")
	cmd.Dir = root
	cmd.WaitDelay = 5 * time.Second
	setProcessGroup(cmd)
	b, err := cmd.Output()
	killProcessGroup(cmd)
	if err != nil {
		t.Fatalf("npm pack --dry-run: %v\n%s", err, b)
	}
	var packs []struct {
		Name  string `json:"name"`
		Files []struct {
			Path string `json:"path"`
		} `json:"files"`
	}
	if err := json.Unmarshal(b, &packs); err != nil || len(packs) != 1 {
		t.Fatalf("npm pack --dry-run --json: %v\n%s", err, b)
	}
	var files []string
	for _, f := range packs[0].Files {
		files = append(files, f.Path)
	}
	sort.Strings(files)
	// npm always adds package.json and the README.
	want := []string{"README.md", "package.json", "web/static/switchboard.d.ts", "web/static/switchboard.js"}
	if strings.Join(files, ",") != strings.Join(want, ",") {
		t.Fatalf("npm pack of %s lists %q, want %q", packs[0].Name, files, want)
	}
}

// typescriptTools returns node and the tsc script of e2e/node/node_modules,
// running `npm ci` there first when the installed typescript is not the
// version package.json pins.
func typescriptTools(t *testing.T, ctx context.Context) (nodeBin, tsc string) {
	t.Helper()
	nodeBin, errNode := exec.LookPath("node")
	npmBin, errNpm := exec.LookPath("npm")
	if errNode != nil || errNpm != nil {
		t.Fatalf("node and npm are needed on PATH (node: %v, npm: %v); run scripts/browser-setup.sh", errNode, errNpm)
	}
	dir, err := filepath.Abs("node")
	if err != nil {
		t.Fatal(err)
	}
	var pkg struct {
		DevDependencies map[string]string `json:"devDependencies"`
	}
	b, err := os.ReadFile(filepath.Join(dir, "package.json"))
	if err == nil {
		err = json.Unmarshal(b, &pkg)
	}
	if err != nil {
		t.Fatalf("read e2e/node/package.json: %v", err)
	}
	want := pkg.DevDependencies["typescript"]
	if !regexp.MustCompile(`^[0-9]+\.[0-9]+\.[0-9]+$`).MatchString(want) {
		t.Fatalf("e2e/node/package.json: typescript must be pinned to an exact version in devDependencies, is %q", want)
	}
	installed := filepath.Join(dir, "node_modules", "typescript", "package.json")
	if installedVersion(installed) != want {
		npmCI(t, ctx, npmBin, dir)
	}
	if got := installedVersion(installed); got != want {
		t.Fatalf("e2e/node/node_modules has typescript %q, package.json pins %q", got, want)
	}
	return nodeBin, filepath.Join(dir, "node_modules", "typescript", "bin", "tsc")
}

// runTSC runs tsc --noEmit with args and returns its combined output.
func runTSC(ctx context.Context, nodeBin, tsc, dir string, args ...string) (string, error) {
	runCtx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(runCtx, nodeBin, append([]string{tsc, "--noEmit", "--pretty", "false"}, args...)...)
	cmd.Dir = dir
	cmd.WaitDelay = 5 * time.Second
	setProcessGroup(cmd)
	out, err := cmd.CombinedOutput()
	killProcessGroup(cmd)
	if runCtx.Err() != nil {
		return string(out), fmt.Errorf("tsc did not finish: %w", runCtx.Err())
	}
	return string(out), err
}

func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	return root
}
