module github.com/miyamotohq/miyamoto

go 1.26.8

require (
	github.com/benbjohnson/clock v1.3.5
	github.com/chromedp/cdproto v0.159.0
	github.com/chromedp/chromedp v0.23.0
	github.com/google/uuid v1.6.0
	github.com/stretchr/testify v1.12.1
	golang.org/x/sync v0.25.0
)

require go.yaml.in/yaml/v3 v3.0.5

require github.com/robfig/cron/v3 v3.0.1

require github.com/go-json-experiment/json v0.0.0-20260213210345-44df1a37e875 // indirect
