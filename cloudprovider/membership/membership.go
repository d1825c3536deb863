// Package membership says which Nova servers belong to which node group. Membership is recorded
// in the server's own metadata and nowhere else, so it survives restarts of the provider and is
// visible to operators (`openstack server show`).
package membership

import "strings"

// Metadata keys set on every server the provider creates (and by Heat templates of node groups).
// Nova allows letters, digits and "-_:. " in metadata keys, so the keys use ":" as separator.
const (
	ClusterKey   = "openstack-autoscaler:cluster"
	NodeGroupKey = "openstack-autoscaler:node-group"
)

// ProviderIDPrefix is how cloud-provider-openstack writes node.spec.providerID by default:
// openstack:///<nova-server-uuid>. Told to put the region in provider IDs, it writes
// openstack://<region>/<nova-server-uuid> instead (see IDs).
const ProviderIDPrefix = "openstack:///"

const scheme = "openstack://"

// Of returns the node group a server's metadata places it in for the given cluster.
func Of(metadata map[string]string, cluster string) (group string, ok bool) {
	if metadata[ClusterKey] != cluster {
		return "", false
	}
	group = metadata[NodeGroupKey]
	return group, group != ""
}

// Metadata returns the metadata that marks a server as a member of group in cluster.
func Metadata(cluster, group string) map[string]string {
	return map[string]string{ClusterKey: cluster, NodeGroupKey: group}
}

// ProviderID is the Kubernetes providerID of a Nova server, without a region.
func ProviderID(serverID string) string { return IDs{}.ProviderID(serverID) }

// IDs writes providerIDs as the cluster's cloud-controller-manager does: Region "" gives
// openstack:///<id>, a region openstack://<region>/<id>. The autoscaler matches instances to
// nodes by comparing these strings, so they must be written the same way.
type IDs struct{ Region string }

// ProviderID is the providerID of the Nova server.
func (f IDs) ProviderID(serverID string) string { return scheme + f.Region + "/" + serverID }

// ServerID extracts the Nova server UUID from a providerID, with or without a region
// (openstack:///<id>, openstack://<region>/<id>); ok is false for providerIDs of other clouds or
// malformed ones.
func ServerID(providerID string) (id string, ok bool) {
	rest, ok := strings.CutPrefix(providerID, scheme)
	if !ok {
		return "", false
	}
	_, id, ok = strings.Cut(rest, "/")
	if !ok || id == "" || strings.Contains(id, "/") {
		return "", false
	}
	return id, true
}

// NodeGroupLabel is the Kubernetes label every node of a group carries (set through the
// group's user-data on real nodes), so the scheduler and operators can select a group.
const NodeGroupLabel = "openstack-autoscaler.io/node-group"
