package nova

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/keypairs"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/servers"
	"k8s.io/klog/v2"

	"github.com/openstack-autoscaler/openstack-autoscaler/cloudprovider/config"
	"github.com/openstack-autoscaler/openstack-autoscaler/cloudprovider/membership"
	"github.com/openstack-autoscaler/openstack-autoscaler/cloudprovider/nodegroup"
	"github.com/openstack-autoscaler/openstack-autoscaler/cloudprovider/openstack"
)

// callTimeout bounds one OpenStack call made in the background.
const callTimeout = 30 * time.Second

// CreateOpts builds the server request of one new member.
func (g *Group) CreateOpts(name string) (servers.CreateOptsBuilder, servers.SchedulerHintOptsBuilder, error) {
	n := g.cfg.Nova
	metadata := map[string]string{}
	for k, v := range n.Metadata {
		metadata[k] = v
	}
	for k, v := range membership.Metadata(g.cluster, g.cfg.Name) {
		metadata[k] = v
	}
	userData, err := g.cfg.RenderUserData(config.UserDataInput{
		ClusterName: g.cluster, NodeGroup: g.cfg.Name, ServerName: name, Labels: g.cfg.Labels, Taints: g.cfg.Taints,
	})
	if err != nil {
		return nil, nil, err
	}
	opts := servers.CreateOpts{
		Name: name, ImageRef: g.imageID, FlavorRef: g.flavorID, Metadata: metadata,
		SecurityGroups: n.SecurityGroups, AvailabilityZone: n.AvailabilityZone, UserData: []byte(userData),
		Networks: "none",
	}
	if len(n.Networks) > 0 {
		nets := make([]servers.Network, len(n.Networks))
		for i, net := range n.Networks {
			nets[i] = servers.Network{UUID: net.UUID, Port: net.Port, FixedIP: net.FixedIP}
		}
		opts.Networks = nets
	}
	if n.BootVolumeSize > 0 {
		opts.ImageRef = ""
		opts.BlockDevice = []servers.BlockDevice{{
			UUID: g.imageID, SourceType: servers.SourceImage, DestinationType: servers.DestinationVolume,
			VolumeSize: n.BootVolumeSize, VolumeType: n.BootVolumeType, DeleteOnTermination: true, BootIndex: 0,
		}}
	}
	var builder servers.CreateOptsBuilder = opts
	if n.KeyName != "" {
		builder = keypairs.CreateOptsExt{CreateOptsBuilder: opts, KeyName: n.KeyName}
	}
	var hints servers.SchedulerHintOptsBuilder
	if n.ServerGroup != "" {
		hints = servers.SchedulerHintOpts{Group: n.ServerGroup}
	}
	return builder, hints, nil
}

// create makes one server. A POST that fails in a way that may have created the server anyway
// (timeout, lost answer, 5xx) is not repeated blindly: the server is looked up by its unique
// name first, and while the look-up fails nothing is posted. A server created by a POST whose
// outcome stayed unknown is adopted by the next listing (Observe). It returns the server's ID
// ("" when the creation failed).
func (g *Group) create(name string) string {
	defer g.inflight.Done()
	g.sem <- struct{}{}
	defer func() { <-g.sem }()
	ctx, cancel := context.WithTimeout(context.Background(), 3*callTimeout)
	defer cancel()
	opts, hints, err := g.CreateOpts(name)
	var server *servers.Server
	if err == nil {
		posted := false
		err = g.Backoff.Retry(ctx, "create server", func(ctx context.Context) error {
			if posted {
				existing, lookErr := g.findByName(ctx, name)
				if lookErr != nil {
					return fmt.Errorf("looking up server %s after a POST whose outcome is unknown: %w", name, lookErr)
				}
				if existing != nil {
					server = existing // an earlier attempt did create it
					return nil
				}
			}
			posted = true
			var createErr error
			server, createErr = servers.Create(ctx, g.compute, opts, hints).Extract()
			return createErr
		})
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	delete(g.creating, name)
	abandoned := g.abandoned[name]
	delete(g.abandoned, name)
	if err != nil && abandoned {
		klog.InfoS("creation of an abandoned scale-up failed; nothing to undo", "group", g.cfg.Name, "server", name, "err", err)
		return ""
	}
	if err != nil {
		info := CreateError(err)
		g.failed[g.placeholder(name)] = info
		g.events.ServerCreateFailed(g.cfg.Name, info.Class)
		klog.ErrorS(err, "creating server failed", "group", g.cfg.Name, "server", name, "class", info.Class)
		return ""
	}
	if _, listed := g.members[server.ID]; !listed {
		server.Name, server.Status, server.Metadata = name, "BUILD", membership.Metadata(g.cluster, g.cfg.Name)
		g.members[server.ID] = &member{server: *server, knownSince: time.Now()}
	}
	if abandoned {
		klog.InfoS("deleting a server of a scale-up that answered an error", "group", g.cfg.Name, "server", name, "id", server.ID)
		if m := g.members[server.ID]; !g.isDeletingLocked(server.ID, m) {
			g.startDeleteLocked(server.ID)
		}
		return server.ID
	}
	g.events.ServerCreated(g.cfg.Name)
	klog.InfoS("server created", "group", g.cfg.Name, "server", name, "id", server.ID)
	return server.ID
}

func (g *Group) findByName(ctx context.Context, name string) (*servers.Server, error) {
	pages, err := servers.List(g.compute, servers.ListOpts{Name: "^" + name + "$"}).AllPages(ctx)
	if err != nil {
		return nil, err
	}
	found, err := servers.ExtractServers(pages)
	if err != nil || len(found) == 0 {
		return nil, err
	}
	return &found[0], nil
}

// delete deletes one member's server after checking, on a fresh read, that it still is one.
func (g *Group) delete(id string) {
	defer g.inflight.Done()
	ctx, cancel := context.WithTimeout(context.Background(), 3*callTimeout)
	defer cancel()
	err := g.deleteServer(ctx, id)
	if err != nil {
		g.events.ServerDeleteFailed(g.cfg.Name)
		klog.ErrorS(err, "deleting server failed; it is tried again later", "group", g.cfg.Name, "server", id)
		if errors.Is(err, nodegroup.ErrNotMember) {
			g.mu.Lock()
			delete(g.deleting, id)
			delete(g.members, id)
			g.mu.Unlock()
		}
		return
	}
	g.events.ServerDeleted(g.cfg.Name)
	klog.InfoS("server deletion requested", "group", g.cfg.Name, "server", id)
}

// deleteServer sends the DELETE of a member's server after checking, on a fresh read, that it
// still is one; a server already gone is no error.
func (g *Group) deleteServer(ctx context.Context, id string) error {
	return g.Backoff.Retry(ctx, "delete server", func(ctx context.Context) error {
		s, err := servers.Get(ctx, g.compute, id).Extract()
		if gophercloud.ResponseCodeIs(err, http.StatusNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		if group, ok := membership.Of(s.Metadata, g.cluster); !ok || group != g.cfg.Name {
			return fmt.Errorf("server %s (%s) is no longer tagged as a member of node group %q: not deleting it: %w",
				id, s.Name, g.cfg.Name, nodegroup.ErrNotMember)
		}
		err = servers.Delete(ctx, g.compute, id).ExtractErr()
		if gophercloud.ResponseCodeIs(err, http.StatusNotFound) {
			return nil
		}
		return err
	})
}

// replace creates the successor under the name (the old server was renamed <name>-replaced, so
// a creation looked up by name finds only the successor) and deletes the old server once the
// successor is ACTIVE. A successor that cannot be created, goes to ERROR or is not ACTIVE
// within SuccessorTimeout is deleted instead, and the old server stays a member: the group
// keeps its size, and ReplaceFailed says why until Replace is asked again.
func (g *Group) replace(id, name string) {
	defer g.inflight.Done()
	g.inflight.Add(1)
	successor := g.create(name)
	failure := ""
	if successor != "" {
		failure = g.awaitSuccessor(successor, name)
	}
	g.mu.Lock()
	defer func() {
		g.mu.Lock()
		delete(g.replacing, id)
		delete(g.cancelled, name)
		g.mu.Unlock()
	}()
	if g.cancelled[name] {
		// The autoscaler deleted the node meanwhile: neither the old server nor its successor
		// stays.
		delete(g.failed, g.placeholder(name))
		for sid, m := range g.members {
			if m.server.Name == name && sid != id && !g.isDeletingLocked(sid, m) {
				g.startDeleteLocked(sid)
			}
		}
		g.mu.Unlock()
		g.inflight.Add(1)
		g.delete(id)
		return
	}
	if info, failed := g.failed[g.placeholder(name)]; failed {
		// Not a failed scale-up for the autoscaler to undo: the replacement failed.
		delete(g.failed, g.placeholder(name))
		failure = "creating the successor: " + info.Message
	}
	if failure != "" {
		g.giveUpLocked(id, name, successor, failure)
		g.mu.Unlock()
		return
	}
	g.mu.Unlock()
	g.inflight.Add(1)
	g.delete(id)
	// The autoscaler may have deleted the node while the old server was being deleted: its
	// successor goes too.
	g.mu.Lock()
	if g.cancelled[name] {
		for sid, m := range g.members {
			if m.server.Name == name && sid != id && !g.isDeletingLocked(sid, m) {
				g.startDeleteLocked(sid)
			}
		}
	}
	g.mu.Unlock()
}

// giveUpLocked ends a replacement that failed: the successor (if any) is deleted, the old
// server counts again, and why is kept for ReplaceFailed.
func (g *Group) giveUpLocked(id, name, successor, failure string) {
	if successor != "" {
		if m, ok := g.members[successor]; !ok || !g.isDeletingLocked(successor, m) {
			g.startDeleteLocked(successor)
		}
	}
	delete(g.deleting, id)
	g.replaceFailed[id] = failure
	klog.ErrorS(errors.New(failure), "replacement given up: the old server stays a member and the group keeps its size; the next repair step tries again",
		"group", g.cfg.Name, "server", name, "id", id, "successor", successor)
}

func (g *Group) successorPoll() time.Duration {
	if g.SuccessorPoll > 0 {
		return g.SuccessorPoll
	}
	return 5 * time.Second
}

func (g *Group) successorTimeout() time.Duration {
	if g.SuccessorTimeout > 0 {
		return g.SuccessorTimeout
	}
	return 15 * time.Minute
}

// awaitSuccessor reads the successor until it is ACTIVE (""), or says why it will not be: in
// ERROR, gone, or not ACTIVE within SuccessorTimeout. A replacement cancelled meanwhile stops
// the wait ("").
func (g *Group) awaitSuccessor(id, name string) string {
	deadline := time.Now().Add(g.successorTimeout())
	status := "BUILD"
	for {
		g.mu.Lock()
		cancelled := g.cancelled[name]
		g.mu.Unlock()
		if cancelled {
			return ""
		}
		ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
		s, err := servers.Get(ctx, g.compute, id).Extract()
		cancel()
		switch {
		case gophercloud.ResponseCodeIs(err, http.StatusNotFound):
			return fmt.Sprintf("successor %s disappeared before it was ACTIVE", id)
		case err == nil:
			status = s.Status
			done, failure := successorState(*s)
			if done || failure != "" {
				return failure
			}
		}
		if time.Now().After(deadline) {
			return fmt.Sprintf("successor %s was not ACTIVE within %s (status %s)", id, g.successorTimeout(), status)
		}
		time.Sleep(g.successorPoll())
	}
}

// successorState says whether a replacement's successor is ready (ACTIVE) or failed (why).
func successorState(s servers.Server) (done bool, failure string) {
	switch s.Status {
	case "ACTIVE":
		return true, ""
	case "ERROR":
		return false, fmt.Sprintf("successor %s went to ERROR: %s", s.ID, ServerError(s).Message)
	}
	return false, ""
}

// Start powers on a stopped server.
func Start(ctx context.Context, compute *gophercloud.ServiceClient, id string) error {
	if err := servers.Start(ctx, compute, id).ExtractErr(); err != nil {
		return fmt.Errorf("starting server %s: %s", id, openstack.Brief(err))
	}
	return nil
}

// Reboot reboots a server: soft (through its OS) or hard (power cycle).
func Reboot(ctx context.Context, compute *gophercloud.ServiceClient, id string, hard bool) error {
	method := servers.SoftReboot
	if hard {
		method = servers.HardReboot
	}
	if err := servers.Reboot(ctx, compute, id, servers.RebootOpts{Type: method}).ExtractErr(); err != nil {
		return fmt.Errorf("rebooting server %s (%s): %s", id, method, openstack.Brief(err))
	}
	return nil
}

// CreateError classifies a failed server POST for the autoscaler: quota errors are "out of
// resources" (it then tries another group), anything else "other".
func CreateError(err error) nodegroup.ErrorInfo {
	msg := openstack.Brief(err)
	if len(msg) > 500 {
		msg = msg[:500]
	}
	if class := nodegroup.FailureClass(msg); class == nodegroup.OutOfResources {
		return nodegroup.ErrorInfo{Code: "QUOTA_EXCEEDED", Message: msg, Class: class}
	}
	return nodegroup.ErrorInfo{Code: "CREATE_FAILED", Message: msg, Class: nodegroup.OtherError}
}

// ServerError classifies a server in ERROR from its fault: "No valid host" and quota faults are
// "out of resources".
func ServerError(s servers.Server) nodegroup.ErrorInfo {
	msg := s.Fault.Message
	if msg == "" {
		msg = "server is in ERROR with no fault recorded"
	}
	if class := nodegroup.FailureClass(msg); class == nodegroup.OutOfResources {
		return nodegroup.ErrorInfo{Code: "NO_VALID_HOST", Message: msg, Class: class}
	}
	return nodegroup.ErrorInfo{Code: "SERVER_ERROR", Message: msg, Class: nodegroup.OtherError}
}
