package main

// Running a part's commands: their output logged per part, the machine and what it runs on.

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// runner runs a part's commands, logging their output.
type runner struct {
	logDir        string
	redis         string // "Redis 7.0.15"
	machine, date string // of the part running
	last          string // the last command run, for a FAILED row
}

// sh runs command (bash) with extra environment, appending its output to the part's log, and
// returns the output.
func (r *runner) sh(ctx context.Context, logName, command string, env ...string) (string, error) {
	r.last = command
	f, err := os.OpenFile(filepath.Join(r.logDir, logName+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return "", err
	}
	defer f.Close()
	fmt.Fprintf(f, "$ %s\n", strings.TrimSpace(strings.Join(env, " ")+" "+command))
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, "bash", "-c", command)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout = io.MultiWriter(&out, f)
	cmd.Stderr = io.MultiWriter(&out, f)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM) }
	cmd.WaitDelay = 10 * time.Second
	err = cmd.Run()
	if err != nil {
		return out.String(), fmt.Errorf("%s: %w (last lines: %s)", command, err, oneLine(lastLines(out.String(), 3), 300))
	}
	return out.String(), nil
}

// goBench runs `go test -run '^$' -bench` in pkg and parses the result.
func (r *runner) goBench(ctx context.Context, logName, pattern, benchtime, pkg string, extra string, env ...string) (string, map[string]bench, string, error) {
	cmd := fmt.Sprintf("go test -run '^$' -bench '%s' -benchtime %s -benchmem -count 1 %s%s", pattern, benchtime, extra, pkg)
	out, err := r.sh(ctx, logName, cmd, env...)
	return cmd, parseBench(out), out, err
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], " | ")
}

func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > n {
		s = s[:n] + "..."
	}
	return s
}

// machine is "2 cores, 23.4 GiB, load 3.1": nproc, MemTotal and the 1-minute load average now.
func machine() string {
	s := fmt.Sprintf("%d cores", runtime.NumCPU())
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		sc := bufio.NewScanner(bytes.NewReader(b))
		for sc.Scan() {
			if f := strings.Fields(sc.Text()); len(f) >= 2 && f[0] == "MemTotal:" {
				if kb, err := strconv.ParseFloat(f[1], 64); err == nil {
					s += fmt.Sprintf(", %.1f GiB", kb/(1<<20))
				}
			}
		}
	}
	if l := loadAverages(); l != nil {
		s += ", load " + l[0]
	}
	return s
}

// loadAverages returns the 1, 5 and 15-minute load averages of /proc/loadavg as written there,
// nil when unknown.
func loadAverages() []string {
	b, err := os.ReadFile("/proc/loadavg")
	if f := strings.Fields(string(b)); err == nil && len(f) >= 3 {
		return f[:3]
	}
	return nil
}

func redisVersion(ctx context.Context) string {
	out, err := exec.CommandContext(ctx, "redis-server", "--version").Output()
	if m := regexp.MustCompile(`v=(\S+)`).FindSubmatch(out); err == nil && m != nil {
		return "Redis " + string(m[1])
	}
	return "Redis"
}

func commit(ctx context.Context) string {
	out, err := exec.CommandContext(ctx, "git", "rev-parse", "--short", "HEAD").Output()
	if err != nil {
		return "unknown"
	}
	c := strings.TrimSpace(string(out))
	if st, err := exec.CommandContext(ctx, "git", "status", "--porcelain", "--untracked-files=no").Output(); err == nil && len(bytes.TrimSpace(st)) > 0 {
		c += " (with uncommitted changes)"
	}
	return c
}

// busyness says how busy the machine was over the run, from the 15-minute load average at its
// end against the cores: above them, other work competed with the benchmarks and latency
// figures are upper bounds.
func busyness() string {
	l := loadAverages()
	if l == nil {
		return "Load of the machine unknown."
	}
	load, err := strconv.ParseFloat(l[2], 64)
	if err != nil {
		return "Load of the machine unknown."
	}
	if cores := runtime.NumCPU(); load > float64(cores) {
		return fmt.Sprintf("The machine was busy (15-minute load average %s on %d cores at the end): latency figures are upper bounds.", l[2], cores)
	}
	return fmt.Sprintf("The machine was otherwise quiet (15-minute load average %s at the end).", l[2])
}
