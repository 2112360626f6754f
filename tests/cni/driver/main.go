// Command driver calls a CNI plugin through libcni exactly as containerd does, for the tests.
//
// Built against Debian's golang-github-appc-cni-dev (GOPATH mode, offline). That libcni (1.1.2)
// predates GC and STATUS (CNI 1.1, libcni 1.2), so those two verbs are sent the way libcni 1.2's
// GCNetworkList and GetStatusNetworkList send them: the plugin's config with name and cniVersion
// injected (and cni.dev/valid-attachments for GC), through the same invoke package.
//
// Usage: driver -cmd add|check|del|gc|status|version -conf FILE -path DIRS [-netns P -id ID
// -ifname IF] [-valid ID/IF,...] [-version V]. Prints {"ok":true,"result":...} or
// {"ok":false,"code":N,"msg":...,"details":...} on stdout and always exits 0 unless misused.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/containernetworking/cni/pkg/types"
)

func main() {
	cmd := flag.String("cmd", "", "add, check, del, gc, status or version")
	conf := flag.String("conf", "", "conflist file")
	path := flag.String("path", "", "CNI_PATH, colon-separated")
	netns := flag.String("netns", "", "CNI_NETNS")
	id := flag.String("id", "", "CNI_CONTAINERID")
	ifname := flag.String("ifname", "eth0", "CNI_IFNAME")
	valid := flag.String("valid", "", "GC: comma-separated ID/IFNAME attachments to keep")
	plugin := flag.String("plugin", "vimaged-cni", "VERSION: the plugin type")
	cacheDir := flag.String("cache", "", "libcni's result cache directory")
	flag.Parse()

	dirs := filepath.SplitList(*path)
	cni := libcni.NewCNIConfigWithCacheDir(dirs, *cacheDir, nil)
	ctx := context.Background()
	rt := &libcni.RuntimeConf{ContainerID: *id, NetNS: *netns, IfName: *ifname}

	var result interface{}
	var err error
	if *cmd == "version" {
		result, err = cni.GetVersionInfo(ctx, *plugin)
		if err == nil {
			info := result.(interface{ SupportedVersions() []string })
			result = map[string]interface{}{"supportedVersions": info.SupportedVersions()}
		}
		emit(result, err)
		return
	}
	list, lerr := libcni.ConfListFromFile(*conf)
	if lerr != nil {
		emit(nil, lerr)
		return
	}
	switch *cmd {
	case "add":
		var r types.Result
		r, err = cni.AddNetworkList(ctx, list, rt)
		if err == nil {
			result = r
		}
	case "check":
		err = cni.CheckNetworkList(ctx, list, rt)
	case "del":
		err = cni.DelNetworkList(ctx, list, rt)
	case "gc":
		attachments := []map[string]string{}
		for _, item := range strings.Split(*valid, ",") {
			if item == "" {
				continue
			}
			parts := strings.SplitN(item, "/", 2)
			attachments = append(attachments, map[string]string{"containerID": parts[0], "ifname": parts[1]})
		}
		err = each(ctx, list, dirs, "GC", map[string]interface{}{"cni.dev/valid-attachments": attachments})
	case "status":
		err = each(ctx, list, dirs, "STATUS", nil)
	default:
		fmt.Fprintln(os.Stderr, "unknown -cmd", *cmd)
		os.Exit(2)
	}
	emit(result, err)
}

// each sends a verb without a result to every plugin of the list, as libcni 1.2 does.
func each(ctx context.Context, list *libcni.NetworkConfigList, dirs []string, verb string, extra map[string]interface{}) error {
	for _, net := range list.Plugins {
		var raw map[string]interface{}
		if err := json.Unmarshal(net.Bytes, &raw); err != nil {
			return err
		}
		raw["name"] = list.Name
		raw["cniVersion"] = list.CNIVersion
		for k, v := range extra {
			raw[k] = v
		}
		stdin, err := json.Marshal(raw)
		if err != nil {
			return err
		}
		pluginPath, err := invoke.FindInPath(net.Network.Type, dirs)
		if err != nil {
			return err
		}
		args := &invoke.Args{Command: verb, Path: strings.Join(dirs, string(os.PathListSeparator))}
		if err := invoke.ExecPluginWithoutResult(ctx, pluginPath, stdin, args, nil); err != nil {
			return err
		}
	}
	return nil
}

func emit(result interface{}, err error) {
	out := map[string]interface{}{"ok": err == nil}
	if err != nil {
		var cniErr *types.Error
		if errors.As(err, &cniErr) {
			out["code"] = cniErr.Code
			out["msg"] = cniErr.Msg
			out["details"] = cniErr.Details
		} else {
			out["code"] = -1
			out["msg"] = err.Error()
		}
	} else if result != nil {
		out["result"] = result
	}
	if err := json.NewEncoder(os.Stdout).Encode(out); err != nil {
		os.Exit(1)
	}
}
