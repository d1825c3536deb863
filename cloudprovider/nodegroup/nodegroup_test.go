package nodegroup

import "testing"

// Messages OpenStack gives when a creation runs out of something the autoscaler can find in
// another group: quota (Nova's, Cinder's for boot volumes, Neutron's ports) and capacity.
func TestFailureClass(t *testing.T) {
	for msg, want := range map[string]ErrorClass{
		"Quota exceeded for cores: Requested 8, but already used 16 of 20 cores":                                                                                 OutOfResources,
		"No valid host was found. There are not enough hosts available.":                                                                                         OutOfResources,
		"Exceeded maximum number of retries. Exhausted all hosts available for retrying build failures for instance":                                             OutOfResources,
		"Build of instance 7c1 aborted: VolumeLimitExceeded: Maximum number of volumes allowed (10) exceeded for quota 'volumes'.":                               OutOfResources,
		"Build of instance 7c1 aborted: Volume resource quota exceeded":                                                                                          OutOfResources,
		"VolumeSizeExceedsAvailableQuota: Requested volume or snapshot exceeds allowed gigabytes quota. Requested 50G, quota is 100G and 80G has been consumed.": OutOfResources,
		"Maximum number of ports exceeded": OutOfResources,
		"Build of instance 7c1 aborted: Failed to allocate the network(s) with error PortLimitExceeded, not rescheduling.": OutOfResources,
		"Image 5d1 could not be found.": OtherError,
		"Invalid key_name provided.":    OtherError,
	} {
		if got := FailureClass(msg); got != want {
			t.Errorf("FailureClass(%q) = %d, want %d", msg, got, want)
		}
	}
}
