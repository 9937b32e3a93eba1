package ociroute

// Template is the endpoint's path pattern, with placeholders for the parts a
// request fills in ("/v2/{name}/manifests/{reference}"): a bounded label for
// metrics and logs, where the raw path would make one series per image.
func (k Kind) Template() string {
	switch k {
	case KindBase:
		return "/v2/"
	case KindCatalog:
		return "/v2/_catalog"
	case KindTags:
		return "/v2/{name}/tags/list"
	case KindManifest:
		return "/v2/{name}/manifests/{reference}"
	case KindBlob:
		return "/v2/{name}/blobs/{digest}"
	case KindUploadStart:
		return "/v2/{name}/blobs/uploads/"
	case KindUpload:
		return "/v2/{name}/blobs/uploads/{uuid}"
	case KindReferrers:
		return "/v2/{name}/referrers/{digest}"
	}
	return "/v2/{unknown}"
}
