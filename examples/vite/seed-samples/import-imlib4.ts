// seed: 安装 CallLib SDK › 步骤4: 导入模块 (或,导入 @rongcloud/imlib-v4-adapter)
//或,导入 @rongcloud/imlib-v4-adapter
import { IMClient, init } from "rcall/imlib-v4-adapter";
